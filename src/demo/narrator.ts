/**
 * The demo's voice: short, timestamped, plain-text lines on stdout. `--quiet` silences the
 * narration; problems and the summary are printed whatever the level.
 */

/** Prints the demo's lines. */
export class Narrator {
  constructor(
    private readonly quiet: boolean,
    private readonly out: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
  ) {}

  /** A step of the story, e.g. "relay restarted"; silent with `--quiet`. */
  say(who: string, what: string): void {
    if (!this.quiet) this.out(`${clock()}  ${who.padEnd(8)} ${what}`);
  }

  /** Something that went wrong; printed even with `--quiet`. */
  warn(who: string, what: string): void {
    this.out(`${clock()}  ${who.padEnd(8)} ! ${what}`);
  }

  /** Untimestamped text (the summary), printed even with `--quiet`. */
  print(text: string): void {
    this.out(text);
  }
}

function clock(now = new Date()): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${two(now.getHours())}:${two(now.getMinutes())}:${two(now.getSeconds())}.${String(now.getMilliseconds()).padStart(3, '0')}`;
}
