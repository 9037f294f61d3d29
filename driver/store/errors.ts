/**
 * A store operation refused or failed for a reason the user can act on (an unknown image, a layer
 * in use, content damaged on disk): the CLI prints its message, not a stack.
 */
export class StoreError extends Error {}

/**
 * Codes of a write the file system refused: the disk or the quota is full, it is read-only, or
 * the device failed. The user's to fix; any other system error escaping a command is a bug.
 */
const WRITE_REFUSALS = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EIO']);

/** Whether `err` is a Node system error for a write the file system refused. */
export function isWriteRefusal(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' && WRITE_REFUSALS.has(code);
}
