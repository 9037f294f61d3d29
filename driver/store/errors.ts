/**
 * A store operation refused or failed for a reason the user can act on (an unknown image, a layer
 * in use, content damaged on disk): the CLI prints its message, not a stack.
 */
export class StoreError extends Error {}
