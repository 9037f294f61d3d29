/** A Dockerfile that cannot be read: names the file, the line and (when known) the instruction. */
export class DockerfileError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly detail: string,
    readonly instruction?: string,
  ) {
    super(`${file}:${line}: ${instruction !== undefined ? `${instruction}: ` : ''}${detail}`);
  }
}
