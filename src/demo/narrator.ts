/**
 * The demo's voice: short, timestamped, plain-text lines on stdout. Deliveries are gathered
 * per client into one line per seq range, printed before any other line so the story stays in
 * order. `--quiet` silences the narration; problems and the summary are printed regardless.
 */

const DELIVERY_LINE_MS = 300;

/** Seqs one client processed since its last delivery line. */
interface Tally {
  first: number;
  last: number;
  count: number;
  redelivered: number;
}

/** Prints the demo's lines. */
export class Narrator {
  private readonly tallies = new Map<string, Tally>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly quiet: boolean,
    private readonly out: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
  ) {}

  /** A step of the story, e.g. "relay restarted"; silent with `--quiet`. */
  say(who: string, what: string): void {
    if (this.quiet) return;
    this.flush();
    this.line(who, what);
  }

  /** Something that went wrong; printed even with `--quiet`. */
  warn(who: string, what: string): void {
    this.flush();
    this.line(who, `! ${what}`);
  }

  /** Untimestamped text (the summary), printed even with `--quiet`. */
  print(text: string): void {
    this.flush();
    this.out(text);
  }

  /** `who` processed `seq`; shown within {@link DELIVERY_LINE_MS} as part of a range. */
  delivered(who: string, seq: number, redelivered: boolean): void {
    if (this.quiet) return;
    const tally = this.tallies.get(who);
    if (tally && seq === tally.last + 1) {
      tally.last = seq;
      tally.count += 1;
      if (redelivered) tally.redelivered += 1;
    } else {
      if (tally) this.flush();
      this.tallies.set(who, { first: seq, last: seq, count: 1, redelivered: redelivered ? 1 : 0 });
    }
    this.timer ??= setTimeout(() => this.flush(), DELIVERY_LINE_MS);
  }

  /** Prints the pending delivery lines. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const tallies = [...this.tallies];
    this.tallies.clear();
    for (const [who, { first, last, count, redelivered }] of tallies) {
      const range = first === last ? `seq ${first}` : `seq ${first}-${last}`;
      const again = redelivered > 0 ? `, ${redelivered} marked redelivered` : '';
      this.line(who, `got ${range} (${count} msg${count === 1 ? '' : 's'}${again})`);
    }
  }

  private line(who: string, what: string): void {
    this.out(`${clock()}  ${who.padEnd(8)} ${what}`);
  }
}

function clock(now = new Date()): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${two(now.getHours())}:${two(now.getMinutes())}:${two(now.getSeconds())}.${String(now.getMilliseconds()).padStart(3, '0')}`;
}
