/**
 * User-facing errors. Commands throw UserError with a message meant for a person and the exit
 * code scripts should see; the entry point (main.ts) maps everything to output and exit codes,
 * in one place. Anything else that escapes is a bug and is reported as one.
 */
export const EXIT_USAGE = 1;
/** mount(8) and umount(8) exit 32 when the mount or unmount itself fails. */
export const EXIT_MOUNT_FAILED = 32;

export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT_USAGE,
  ) {
    super(message);
    this.name = 'UserError';
  }
}
