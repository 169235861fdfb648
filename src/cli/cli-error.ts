/** Exit codes of the operator CLI, and the error that carries one. */
export const ExitCode = {
  ok: 0,
  /** The operation was tried and failed (broker or store unreachable, publish refused, ...). */
  failed: 1,
  /** Wrong command line or configuration: nothing was tried. */
  usage: 2,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** A failure the CLI reports as one line and an exit code; `cause` is kept for debugging. */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCodeValue,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CliError';
  }
}

export function usageError(message: string): CliError {
  return new CliError(ExitCode.usage, message);
}

export function failure(message: string, cause?: unknown): CliError {
  return new CliError(ExitCode.failed, message, cause === undefined ? {} : { cause });
}
