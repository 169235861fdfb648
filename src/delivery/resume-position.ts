/**
 * Where a connection's delivery starts, from its `hello` and the stream's numbering (see
 * docs/PROTOCOL.md, Resume rules), and whether the store lost writes. Pure.
 */
import type { StreamMeta } from '../store/store.js';

export interface ResumeRequest {
  epoch: string;
  lastSeq: number;
}

export interface AttachResult {
  epoch: string;
  /** The seq after which this connection's delivery continues. */
  lastSeq: number;
  resumed: boolean;
  recovered: boolean;
  /** Set when the client's epoch is gone: send `reset` before `welcome`. */
  reset?: { epoch: string; lastSeq: number; reason: string };
  /** Set when the resume position was ahead of the store (which then lost its epoch). */
  warning?: string;
}

/** The stream's numbering as a position is resolved against it. */
export interface NumberingState {
  epoch: string;
  /** The highest seq some client acked. */
  acked: number;
  /** The lowest seq history still holds. */
  historyStart: number;
}

/**
 * The position for a `hello`: no resume starts after the acked mark; another epoch is reset to
 * it; a position the history still covers (or at or past the acked mark) is honoured; one below
 * what history holds continues where history starts (`recovered:false`). A position past the
 * head never gets here: the stream takes it as a store that lost writes and ends the epoch.
 */
export function resolvePosition(resume: ResumeRequest | undefined, state: NumberingState): AttachResult {
  const { epoch, acked, historyStart } = state;
  const base = { epoch, resumed: false, recovered: true };
  if (!resume) return { ...base, lastSeq: acked };
  if (resume.epoch !== epoch) {
    return { ...base, lastSeq: acked, recovered: false, reset: { epoch, lastSeq: acked, reason: 'epoch-unknown' } };
  }
  if (resume.lastSeq >= acked || historyStart <= resume.lastSeq + 1) {
    return { ...base, lastSeq: resume.lastSeq, resumed: true };
  }
  return { ...base, lastSeq: Math.min(historyStart - 1, acked), resumed: true, recovered: false };
}

/**
 * Whether the store's numbering is behind what was seen in the same epoch: a client resuming past
 * its head, or a stream that saw a higher head. Either means the store lost writes (a restart
 * from an older append-only file, a failover to a lagging replica), since seqs are handed out by
 * the store alone. `seen` is the position that proves it; `warning` is for the client.
 */
export function lostWrites(
  meta: StreamMeta,
  resume: ResumeRequest | undefined,
  stream: { epoch: string; head: number } | undefined,
): { seen: number | undefined; warning: string | undefined } {
  if (resume && resume.epoch === meta.epoch && resume.lastSeq > meta.seq) {
    return { seen: resume.lastSeq, warning: `lastSeq ${resume.lastSeq} is ahead of the stream (${meta.seq}): its numbering was lost` };
  }
  if (stream && stream.epoch === meta.epoch && meta.seq < stream.head) return { seen: stream.head, warning: undefined };
  return { seen: undefined, warning: undefined };
}
