/**
 * Properties of the frame codec (src/protocol/frames.ts, frame-types.ts, server-frames.ts),
 * checked against an oracle written from docs/PROTOCOL.md 3.3-3.5 without the zod schemas:
 * - decodeClientFrame (the relay) and decodeServerFrame (the SDK) never throw, whatever the text;
 * - a text that is not JSON is refused as such; a JSON value is accepted exactly when the oracle
 *   accepts it, as the value reduced to the fields the frame type knows (unknown fields dropped),
 *   a fresh plain object; Object.prototype is never touched;
 * - the SDK's hand-written check of server frames (server-frames.ts, no zod, so that browsers do
 *   not download it) accepts and refuses exactly what the relay's zod schema for server frames
 *   (`serverFrameSchema`) does, with the same frame: every server-frame property below checks both;
 * - the zod schemas parse to exactly the frame types the SDK declares without zod (at compile time);
 * - a refusal names the problem in at most 100 characters (it becomes the close reason) and never
 *   repeats a token the client sent;
 * - every valid frame round-trips through encodeFrame and its decoder, and its text survives
 *   UTF-8 (what the socket carries), lone surrogates included;
 * - a `msg` frame the relay builds from a RabbitMQ message (message-codec) decodes in the SDK to
 *   that message.
 * Inputs: arbitrary text, JSON objects with the protocol's keys and hostile values (huge, negative,
 * fractional and overflowing numbers, `__proto__` and `constructor` keys, deep nesting, long
 * strings, lone surrogates), valid frames with fields set, replaced or removed, valid frame texts
 * with characters edited, and every limited field at and just past each of its limits. Length
 * limits count characters (code points), as zod does: an emoji is one character of two UTF-16 units.
 */
import fc from 'fast-check';
import { describe, expect, expectTypeOf, it } from 'vitest';
import type { z } from 'zod';
import { decodeMessage, msgFrame } from '../../src/delivery/message-codec.js';
import type { clientFrameSchema } from '../../src/protocol/frames.js';
import {
  decodeClientFrame,
  decodeServerFrame,
  encodeFrame,
  serverFrameSchema,
  type ClientFrame,
  type DecodeResult,
  type ServerFrame,
} from '../../src/protocol/frames.js';
import { runs } from '../helpers/property-runs.js';

const MAX = Number.MAX_SAFE_INTEGER;
/** Every token the arbitraries make starts with this, so a reason that repeats one is easy to see. */
const TOKEN_MARK = 'sEcReT';

// The oracle ---------------------------------------------------------------------------------

type Obj = Record<string, unknown>;
const isObject = (value: unknown): value is Obj => typeof value === 'object' && value !== null && !Array.isArray(value);
const hasOwn = (object: Obj, key: string): boolean => Object.prototype.hasOwnProperty.call(object, key);
/** A field as JSON gives it: own properties only (JSON has no `undefined`, so absent is undefined). */
const own = (object: Obj, key: string): unknown => (hasOwn(object, key) ? object[key] : undefined);
const isInt = (value: unknown, min: number, max = MAX): value is number =>
  typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
/** Length limits count code points (a surrogate pair is one character, a lone surrogate one too). */
const isText = (value: unknown, min: number, max: number): value is string =>
  typeof value === 'string' && [...value].length >= min && [...value].length <= max;

/** The client frame a JSON value stands for (PROTOCOL 3.4), or undefined when it breaks a rule. */
function clientOracle(value: unknown): ClientFrame | undefined {
  if (!isObject(value)) return undefined;
  const field = (key: string) => own(value, key);
  const token = field('token');
  const seq = field('seq');
  switch (field('type')) {
    case 'hello': {
      const frame: ClientFrame = { type: 'hello' };
      if (token !== undefined) {
        if (!isText(token, 1, 16_384)) return undefined;
        frame.token = token;
      }
      const resume = field('resume');
      if (resume !== undefined) {
        if (!isObject(resume)) return undefined;
        const epoch = own(resume, 'epoch');
        const lastSeq = own(resume, 'lastSeq');
        if (!isText(epoch, 1, 128) || !isInt(lastSeq, 0)) return undefined;
        frame.resume = { epoch, lastSeq };
      }
      const window = field('window');
      if (window !== undefined) {
        if (!isInt(window, 1, 65_535)) return undefined;
        frame.window = window;
      }
      const device = field('device');
      if (device !== undefined) {
        if (!isText(device, 1, 64)) return undefined;
        frame.device = device;
      }
      return frame;
    }
    case 'ack':
      return isInt(seq, 1) ? { type: 'ack', seq } : undefined;
    case 'nack': {
      const requeue = field('requeue');
      return isInt(seq, 1) && typeof requeue === 'boolean' ? { type: 'nack', seq, requeue } : undefined;
    }
    case 'refresh':
      return isText(token, 1, 16_384) ? { type: 'refresh', token } : undefined;
    case 'ping': {
      const id = field('id');
      if (id === undefined) return { type: 'ping' };
      // JSON can spell an infinite number (1e400); the relay echoes the id, so only finite ones.
      const valid = isText(id, 0, 64) || (typeof id === 'number' && Number.isFinite(id));
      return valid ? { type: 'ping', id } : undefined;
    }
    default:
      return undefined;
  }
}

/**
 * The server frame a JSON value stands for, or undefined. Follows PROTOCOL 3.5, as leniently as
 * the SDK reads it: `msg.ts` any finite number, `error.seq` any safe integer, `status.reason`
 * of any length, `pong.id` any JSON value.
 */
function serverOracle(value: unknown): ServerFrame | undefined {
  if (!isObject(value)) return undefined;
  const field = (key: string) => own(value, key);
  const epoch = field('epoch');
  const lastSeq = field('lastSeq');
  const reason = field('reason');
  switch (field('type')) {
    case 'welcome': {
      const [session, user, resumed, recovered, window, heartbeatMs] = [
        'session',
        'user',
        'resumed',
        'recovered',
        'window',
        'heartbeatMs',
      ].map(field);
      const valid =
        typeof session === 'string' &&
        typeof user === 'string' &&
        typeof epoch === 'string' &&
        isInt(lastSeq, 0) &&
        typeof resumed === 'boolean' &&
        typeof recovered === 'boolean' &&
        isInt(window, 1) &&
        isInt(heartbeatMs, 0);
      return valid ? { type: 'welcome', session, user, epoch, lastSeq, resumed, recovered, window, heartbeatMs } : undefined;
    }
    case 'msg': {
      const [seq, id, ts, redelivered, contentType, topic] = ['seq', 'id', 'ts', 'redelivered', 'contentType', 'topic'].map(field);
      const valid =
        isInt(seq, 1) &&
        typeof id === 'string' &&
        typeof ts === 'number' &&
        Number.isFinite(ts) &&
        typeof redelivered === 'boolean' &&
        typeof contentType === 'string' &&
        (topic === undefined || typeof topic === 'string') &&
        hasOwn(value, 'data');
      if (!valid) return undefined;
      const frame = { type: 'msg' as const, seq, id, ts, redelivered, contentType, data: value.data };
      return topic === undefined ? frame : { ...frame, topic };
    }
    case 'reset':
      return typeof epoch === 'string' && isInt(lastSeq, 0) && typeof reason === 'string'
        ? { type: 'reset', epoch, lastSeq, reason }
        : undefined;
    case 'status': {
      const state = field('state');
      if (state !== 'ok' && state !== 'degraded') return undefined;
      if (reason === undefined) return { type: 'status', state };
      return typeof reason === 'string' ? { type: 'status', state, reason } : undefined;
    }
    case 'error': {
      const [code, message, seq] = ['code', 'message', 'seq'].map(field);
      if (typeof code !== 'string' || typeof message !== 'string') return undefined;
      if (seq === undefined) return { type: 'error', code, message };
      return isInt(seq, -MAX) ? { type: 'error', code, message, seq } : undefined;
    }
    case 'pong':
      return hasOwn(value, 'id') ? { type: 'pong', id: value.id } : { type: 'pong' };
    default:
      return undefined;
  }
}

/** The fields each frame type may carry: a decoded frame has no other own property. */
const KNOWN_FIELDS: Record<string, readonly string[]> = {
  hello: ['type', 'token', 'resume', 'window', 'device'],
  ack: ['type', 'seq'],
  nack: ['type', 'seq', 'requeue'],
  refresh: ['type', 'token'],
  ping: ['type', 'id'],
  welcome: ['type', 'session', 'user', 'epoch', 'lastSeq', 'resumed', 'recovered', 'window', 'heartbeatMs'],
  msg: ['type', 'seq', 'id', 'ts', 'redelivered', 'contentType', 'topic', 'data'],
  reset: ['type', 'epoch', 'lastSeq', 'reason'],
  status: ['type', 'state', 'reason'],
  error: ['type', 'code', 'message', 'seq'],
  pong: ['type', 'id'],
};

const prototypeNames = Object.getOwnPropertyNames(Object.prototype).sort();

function expectFreshFrame(frame: { type: string }): void {
  expect(Object.getPrototypeOf(frame)).toBe(Object.prototype);
  const known = KNOWN_FIELDS[frame.type] ?? [];
  expect(Object.getOwnPropertyNames(frame).filter((name) => !known.includes(name))).toEqual([]);
  if (frame.type === 'hello' && 'resume' in frame && frame.resume !== undefined) {
    expect(Object.getPrototypeOf(frame.resume)).toBe(Object.prototype);
    expect(Object.getOwnPropertyNames(frame.resume).sort()).toEqual(['epoch', 'lastSeq']);
  }
}

function expectPrototypeUntouched(): void {
  expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(prototypeNames);
  expect(({} as Obj).polluted).toBeUndefined();
}

const NOT_JSON = Symbol('not JSON');
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return NOT_JSON;
  }
}

/** Checks one decoder on one text against its oracle. */
function expectAgreement<T extends { type: string }>(
  decode: (text: string) => DecodeResult<T>,
  oracle: (value: unknown) => T | undefined,
  text: string,
) {
  const result = decode(text);
  expectPrototypeUntouched();
  const parsed = parseJson(text);
  if (parsed === NOT_JSON) {
    expect(result).toEqual({ ok: false, reason: 'frame is not valid JSON' });
    return;
  }
  const expected = oracle(parsed);
  if (expected === undefined) {
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(typeof result.reason).toBe('string');
    expect(result.reason.length).toBeGreaterThan(0);
    expect(result.reason.length).toBeLessThanOrEqual(100);
    expect(result.reason).not.toContain(TOKEN_MARK);
    return;
  }
  expect(result).toEqual({ ok: true, frame: expected });
  if (result.ok) expectFreshFrame(result.frame);
}

const agreesClient = (text: string) => expectAgreement(decodeClientFrame, clientOracle, text);
/**
 * Checks the SDK's hand-written decoder against the relay's zod schema for server frames: the
 * same verdict on every text and, when both accept, the same frame. `compareFrames` is false
 * for values nested too deep to compare by recursion.
 */
function expectSameAsSchema(text: string, compareFrames = true): void {
  const result = decodeServerFrame(text);
  const parsed = parseJson(text);
  if (parsed === NOT_JSON) {
    expect(result.ok).toBe(false);
    return;
  }
  const reference = serverFrameSchema.safeParse(parsed);
  expect(result.ok).toBe(reference.success);
  if (compareFrames && result.ok && reference.success) expect(result.frame).toEqual(reference.data);
}

const agreesServer = (text: string) => {
  expectAgreement(decodeServerFrame, serverOracle, text);
  expectSameAsSchema(text);
};

/** Whether a text crosses UTF-8 unchanged: true unless it holds a lone surrogate. */
const survivesUtf8 = (text: string) => Buffer.from(text, 'utf8').toString('utf8') === text;

// Arbitraries --------------------------------------------------------------------------------

const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code));
const astral = fc.integer({ min: 0x10000, max: 0x10ffff }).map((code) => String.fromCodePoint(code));
const awkward = fc.constantFrom(
  '"',
  '\\',
  '/',
  '\u0000',
  '\u001f',
  '\u007f',
  '\u2028',
  '\u2029',
  '\ufeff',
  '\ud800',
  '\udbff',
  '\udc00',
  '\udfff',
);
/** One piece of text: mostly printable ASCII, else any UTF-16 code unit (lone surrogates too) or code point. */
const unit = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }) },
  codeUnit,
  astral,
  awkward,
);
/** Any UTF-16 string of `min` to `max` characters (code points, as the protocol's limits count them). */
const text = (min: number, max: number) =>
  fc.string({ unit, minLength: min, maxLength: max }).filter((value) => [...value].length >= min && [...value].length <= max);
const sized = (length: number, fill = 'e') => fill.repeat(length);

const seq = fc.oneof(
  fc.integer({ min: 1, max: 1000 }),
  fc.constantFrom(1, MAX),
  fc.maxSafeNat().filter((n) => n >= 1),
);
const position = fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.constantFrom(0, MAX), fc.maxSafeNat());
const token = fc.oneof(
  text(0, 60).map((value) => `${TOKEN_MARK}${value}`),
  fc.integer({ min: 16_300, max: 16_384 }).map((length) => TOKEN_MARK.padEnd(length, 'x')),
);
/** A finite number that JSON carries as itself (-0 comes back as 0). */
const jsonNumber = fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Object.is(n, -0));

/** A valid frame of each client frame type. */
const clientFrames = {
  hello: fc.record(
    {
      type: fc.constant('hello' as const),
      token,
      resume: fc.record({ epoch: fc.oneof(text(1, 128), fc.constant(sized(128))), lastSeq: position }),
      window: fc.oneof(fc.integer({ min: 1, max: 65_535 }), fc.constantFrom(1, 65_535)),
      device: fc.oneof(text(1, 64), fc.constant(sized(64))),
    },
    { requiredKeys: ['type'] },
  ),
  ack: fc.record({ type: fc.constant('ack' as const), seq }),
  nack: fc.record({ type: fc.constant('nack' as const), seq, requeue: fc.boolean() }),
  refresh: fc.record({ type: fc.constant('refresh' as const), token }),
  ping: fc.record(
    { type: fc.constant('ping' as const), id: fc.oneof(text(0, 64), fc.constant(sized(64)), fc.integer(), jsonNumber) },
    { requiredKeys: ['type'] },
  ),
};
const clientFrame: fc.Arbitrary<ClientFrame> = fc.oneof(...Object.values(clientFrames));

/** Any JSON value as it comes back from JSON (fast-check may give -0, which JSON spells 0). */
const json = fc.jsonValue({ maxDepth: 3 }).map((value) => JSON.parse(JSON.stringify(value)) as unknown);
/** A valid frame of each server frame type. */
const serverFrames = {
  welcome: fc.record({
    type: fc.constant('welcome' as const),
    session: text(0, 40),
    user: text(0, 40),
    epoch: text(0, 40),
    lastSeq: position,
    resumed: fc.boolean(),
    recovered: fc.boolean(),
    window: fc.oneof(
      fc.integer({ min: 1, max: 100 }),
      fc.maxSafeNat().filter((n) => n >= 1),
    ),
    heartbeatMs: position,
  }),
  msg: fc.record(
    {
      type: fc.constant('msg' as const),
      seq,
      id: text(1, 255),
      ts: fc.oneof(fc.maxSafeNat(), jsonNumber),
      redelivered: fc.boolean(),
      contentType: text(0, 60),
      topic: text(1, 255),
      data: json,
    },
    { requiredKeys: ['type', 'seq', 'id', 'ts', 'redelivered', 'contentType', 'data'] },
  ),
  reset: fc.record({ type: fc.constant('reset' as const), epoch: text(0, 40), lastSeq: position, reason: text(0, 40) }),
  status: fc.record(
    { type: fc.constant('status' as const), state: fc.constantFrom('ok' as const, 'degraded' as const), reason: text(0, 200) },
    { requiredKeys: ['type', 'state'] },
  ),
  error: fc.record(
    { type: fc.constant('error' as const), code: text(0, 40), message: text(0, 100), seq: fc.maxSafeInteger() },
    { requiredKeys: ['type', 'code', 'message'] },
  ),
  pong: fc.record({ type: fc.constant('pong' as const), id: json }, { requiredKeys: ['type'] }),
};
const serverFrame: fc.Arbitrary<ServerFrame> = fc.oneof(...Object.values(serverFrames));

/**
 * Each limited field of each frame type, with its range from PROTOCOL 3.4-3.5 and section 10:
 * integers from `min` to `max`, or strings of `min` to `max` characters.
 */
interface Limited {
  path: readonly string[];
  kind: 'int' | 'text';
  min: number;
  max: number;
}
const CLIENT_LIMITS: Record<keyof typeof clientFrames, Limited[]> = {
  hello: [
    { path: ['token'], kind: 'text', min: 1, max: 16_384 },
    { path: ['resume', 'epoch'], kind: 'text', min: 1, max: 128 },
    { path: ['resume', 'lastSeq'], kind: 'int', min: 0, max: MAX },
    { path: ['window'], kind: 'int', min: 1, max: 65_535 },
    { path: ['device'], kind: 'text', min: 1, max: 64 },
  ],
  ack: [{ path: ['seq'], kind: 'int', min: 1, max: MAX }],
  nack: [{ path: ['seq'], kind: 'int', min: 1, max: MAX }],
  refresh: [{ path: ['token'], kind: 'text', min: 1, max: 16_384 }],
  ping: [{ path: ['id'], kind: 'text', min: 0, max: 64 }],
};
const SERVER_LIMITS: Record<keyof typeof serverFrames, Limited[]> = {
  welcome: [
    { path: ['lastSeq'], kind: 'int', min: 0, max: MAX },
    { path: ['window'], kind: 'int', min: 1, max: MAX },
    { path: ['heartbeatMs'], kind: 'int', min: 0, max: MAX },
  ],
  msg: [{ path: ['seq'], kind: 'int', min: 1, max: MAX }],
  reset: [{ path: ['lastSeq'], kind: 'int', min: 0, max: MAX }],
  status: [],
  error: [{ path: ['seq'], kind: 'int', min: -MAX, max: MAX }],
  pong: [],
};

/** JSON texts at and just past a field's limits, in several spellings. */
function valuesAtLimits({ kind, min, max }: Limited): string[] {
  if (kind === 'int') {
    const beyond = (n: number) => (Math.abs(n) === MAX ? `${n < 0 ? '-' : ''}9007199254740993` : String(n + Math.sign(n || 1)));
    return [
      String(min - 1),
      String(min),
      `${min}.0`,
      `${min}e0`,
      String(min + 0.5),
      String(max),
      beyond(max),
      String(max - 0.5),
      '-0',
      '1e400',
      '-1e400',
      `"${min}"`,
      'null',
      'true',
    ];
  }
  const lengths = [min - 1, min, max, max + 1].filter((length) => length >= 0);
  // ASCII, astral characters (two UTF-16 units each, one character) and lone surrogates (one each).
  const strings = lengths.flatMap((length) => ['t'.repeat(length), '\u{1F600}'.repeat(length), '\ud800'.repeat(length)]);
  return [...strings.map((value) => JSON.stringify(value)), '1', 'null', '[]'];
}

const nested = (depth: number, open: string, core: string, close: string) => open.repeat(depth) + core + close.repeat(depth);
/** Numbers at and around every numeric limit of the protocol, negatives and fractions among them. */
const LIMITS = [0, 1, 64, 128, 16_384, 65_535, MAX];
const boundaryNumber = fc.oneof(
  fc.integer({ min: -3, max: 3 }),
  fc.constantFrom(...LIMITS).chain((limit) => fc.constantFrom(limit - 1, limit, limit + 1, limit + 2, -limit, limit + 0.5)),
);
const leafValue = (maxDepth: number): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 4, arbitrary: boundaryNumber.map(String) },
    json.map((value) => JSON.stringify(value)),
    fc.constantFrom(
      ...['1e400', '-1e400', '-0', '1.0', '1E0', '0.5e1', '1e-400', '5e-324', '9007199254740993', '-9007199254740992'],
      ...['true', 'false', 'null', '""', '[]', '{}', '"1"', '[1]', '{"__proto__":{"polluted":true}}'],
      ...['{"constructor":{"prototype":{"polluted":true}}}', 'NaN', 'Infinity', '01', '+1', '.5', 'undefined', "'x'"],
    ),
    fc.maxSafeInteger().map(String),
    fc.double().map(String),
    text(0, 80).map((value) => JSON.stringify(value)),
    fc.constantFrom(0, 1, 63, 64, 65, 127, 128, 129, 16_384, 16_385, 70_000).map((length) => JSON.stringify(sized(length, 's'))),
    fc.integer({ min: 1, max: maxDepth }).chain((depth) => fc.constantFrom(nested(depth, '[', '', ']'), nested(depth, '{"a":', '1', '}'))),
  );
/** JSON text for a value (or, now and then, text that is not JSON at all): hostile on purpose. */
const rawValue = (maxDepth: number): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 6, arbitrary: leafValue(maxDepth) },
    // Something shaped like a resume position, with hostile fields.
    fc
      .tuple(
        fc.oneof(fc.constant('"e"'), leafValue(maxDepth)),
        leafValue(maxDepth),
        fc.option(fc.tuple(fc.constantFrom('__proto__', 'constructor', 'x'), leafValue(maxDepth))),
      )
      .map(
        ([epoch, lastSeq, extra]) => `{"epoch":${epoch},"lastSeq":${lastSeq}${extra ? `,${JSON.stringify(extra[0])}:${extra[1]}` : ''}}`,
      ),
  );
const knownKey = fc.constantFrom(...new Set(Object.values(KNOWN_FIELDS).flat()), 'epoch', 'lastSeq');
const hostileKey = fc.constantFrom(
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  'valueOf',
  'Type',
  'seq ',
  ' type',
);
const key = fc.oneof({ weight: 4, arbitrary: knownKey }, hostileKey, text(0, 10));
const frameType = fc.constantFrom(...Object.keys(KNOWN_FIELDS), 'Hello', 'ACK', '', 'unknown');
/** Mostly a key the frame type knows, else any key. */
const keyFor = (type: string) => fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...(KNOWN_FIELDS[type] ?? ['seq'])) }, key);

/** A JSON object text with a frame type, then mostly that type's keys, with hostile values. */
const nearFrameText = (maxDepth: number) =>
  frameType.chain((type) =>
    fc.tuple(fc.array(fc.tuple(keyFor(type), rawValue(maxDepth)), { maxLength: 6 }), fc.boolean()).map(([entries, typeFirst]) => {
      const parts = entries.map(([name, raw]) => `${JSON.stringify(name)}:${raw}`);
      const typePart = `"type":${JSON.stringify(type)}`;
      return `{${(typeFirst ? [typePart, ...parts] : [...parts, typePart]).join(',')}}`;
    }),
  );

/** A key to change: one the object has (by index, mostly), or any key. */
type KeyChoice = { existing: number } | { name: string };
const keyChoice: fc.Arbitrary<KeyChoice> = fc.oneof({ weight: 3, arbitrary: fc.record({ existing: fc.nat() }) }, fc.record({ name: key }));
type Mutation =
  | { kind: 'set'; inResume: boolean; key: KeyChoice; raw: string }
  | { kind: 'delete'; inResume: boolean; key: KeyChoice }
  | { kind: 'whole'; raw: string };
const inResume = fc.nat(3).map((n) => n === 0);
const mutation = (maxDepth: number): fc.Arbitrary<Mutation> =>
  fc.oneof(
    { weight: 5, arbitrary: fc.record({ kind: fc.constant('set' as const), inResume, key: keyChoice, raw: rawValue(maxDepth) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), inResume, key: keyChoice }) },
    fc.record({ kind: fc.constant('whole' as const), raw: rawValue(maxDepth) }),
  );

const keyName = (object: Obj, choice: KeyChoice): string => {
  if ('name' in choice) return choice.name;
  const names = Object.keys(object);
  return names[choice.existing % Math.max(1, names.length)] ?? 'type';
};

/** Sets an own property, `__proto__` included (an assignment would change the prototype instead). */
function defineOwn(object: Obj, name: string, value: unknown): void {
  Object.defineProperty(object, name, { value, enumerable: true, writable: true, configurable: true });
}

/** The text of `frame` after the mutations: fields set to raw JSON text, removed, or the whole frame replaced. */
function mutate(frame: object, mutations: readonly Mutation[]): string {
  const value = JSON.parse(JSON.stringify(frame)) as Obj;
  const raws: string[] = [];
  for (const change of mutations) {
    if (change.kind === 'whole') return change.raw;
    let target = value;
    if (change.inResume) {
      const resume = own(value, 'resume');
      if (isObject(resume)) target = resume;
      else defineOwn(value, 'resume', (target = {}));
    }
    const name = keyName(target, change.key);
    if (change.kind === 'delete') {
      delete target[name];
      continue;
    }
    defineOwn(target, name, `\u0001raw${raws.length}\u0001`);
    raws.push(change.raw);
  }
  let out = JSON.stringify(value);
  raws.forEach((raw, index) => {
    out = out.replace(JSON.stringify(`\u0001raw${index}\u0001`), () => raw);
  });
  return out;
}

/** `frame`'s text with the field at `path` set to the JSON text `raw` (a missing `resume` is made valid first). */
function withField(frame: object, path: readonly string[], raw: string): string {
  const value = JSON.parse(JSON.stringify(frame)) as Obj;
  let target = value;
  for (const name of path.slice(0, -1)) {
    const inner = own(target, name);
    if (isObject(inner)) target = inner;
    else defineOwn(target, name, (target = { epoch: 'e', lastSeq: 0 }));
  }
  const marker = '\u0001raw\u0001';
  defineOwn(target, path[path.length - 1]!, marker);
  return JSON.stringify(value).replace(JSON.stringify(marker), () => raw);
}

type Edit = { op: 'insert' | 'delete' | 'replace'; at: number; piece: string };
const edit: fc.Arbitrary<Edit> = fc.record({
  op: fc.constantFrom('insert' as const, 'delete' as const, 'replace' as const),
  at: fc.nat(),
  piece: unit,
});
const editText = (original: string, edits: readonly Edit[]) =>
  edits.reduce((current, { op, at, piece }) => {
    const index = current.length === 0 ? 0 : at % current.length;
    if (op === 'insert') return current.slice(0, index) + piece + current.slice(index);
    if (op === 'delete') return current.slice(0, index) + current.slice(index + 1);
    return current.slice(0, index) + piece + current.slice(index + 1);
  }, original);

const anyText = fc.oneof(
  text(0, 200),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.anything().map((value) => JSON.stringify(value) ?? 'undefined'),
);

// The hostile inputs named one by one, for both decoders. A client frame is at most 64 KiB
// (maxPayload), so it nests at most 32 768 deep; relay frames are checked deeper further down.
const DEEP = 32_768;
const hostileTexts = [
  nested(DEEP, '[', '', ']'),
  nested(DEEP, '{"a":', '1', '}'),
  `{"type":"ping","id":${nested(DEEP, '[', '', ']')}}`,
  `{"type":"hello","resume":${nested(DEEP, '{"epoch":', '"e"', ',"lastSeq":1}')}}`,
  '{"type":"ack","seq":1e400}',
  '{"type":"ack","seq":-1}',
  '{"type":"ack","seq":0}',
  '{"type":"ack","seq":-0}',
  '{"type":"ack","seq":1.5}',
  '{"type":"ack","seq":9007199254740992}',
  '{"type":"ack","seq":9007199254740993}',
  '{"type":"nack","seq":2,"requeue":1}',
  '{"type":"hello","resume":{"epoch":"e","lastSeq":-1}}',
  '{"type":"hello","resume":{"epoch":"e","lastSeq":-0}}',
  '{"type":"hello","resume":{"epoch":"e","lastSeq":0.5}}',
  '{"type":"hello","window":0}',
  '{"type":"hello","window":65536}',
  '{"type":"ping","id":1e400}',
  '{"type":"ack","seq":1,"__proto__":{"seq":-1,"polluted":true}}',
  '{"__proto__":{"type":"ack","seq":1}}',
  '{"type":"hello","resume":{"__proto__":{"epoch":"e","lastSeq":1}}}',
  '{"type":"ack","seq":1,"constructor":{"prototype":{"polluted":true}}}',
  '{"type":"constructor"}',
  '{"type":"__proto__"}',
  '{"type":"toString"}',
  '{"type":"hello","token":"sEcReT","token":""}',
  `{"type":"hello","token":"${TOKEN_MARK}${sized(16_379, 'x')}"}`,
  `{"type":"refresh","token":"${TOKEN_MARK}${sized(16_379, 'x')}"}`,
  `{"type":"refresh","token":"${TOKEN_MARK}${sized(200_000, 'x')}"}`,
  `{"type":"hello","resume":{"epoch":"${sized(129)}","lastSeq":1}}`,
  `{"type":"ping","id":"${sized(65)}"}`,
  '{"type":"ping","id":"\\ud800"}',
  '{"type":"ping","id":"\ud800\udc00\udc00"}',
  '{"type":"hello","resume":{"epoch":"\\udfff","lastSeq":1}}',
  '{"type":"msg","seq":1,"id":"\\ud800","ts":1,"redelivered":false,"contentType":"","data":"\\udc00"}',
  `{"type":"msg","seq":1,"id":"m","ts":1,"redelivered":false,"contentType":"","data":${nested(DEEP, '[', '', ']')}}`,
  `{"type":"pong","id":${nested(DEEP, '{"a":', '1', '}')}}`,
  '{"type":"welcome","session":"s","user":"u","epoch":"e","lastSeq":-1,"resumed":true,"recovered":true,"window":1,"heartbeatMs":0}',
  '{"type":"msg","seq":1,"id":"m","ts":1e400,"redelivered":false,"contentType":"","data":null}',
  '{"type":"msg","seq":1,"id":"m","ts":1,"redelivered":false,"contentType":""}',
  '{"type":"msg","seq":1,"id":"m","ts":1,"redelivered":false,"contentType":"","topic":null,"data":1}',
  '{"type":"msg","seq":1,"id":"m","ts":1,"redelivered":false,"contentType":"","topic":7,"data":1}',
  '{"type":"msg","seq":1,"id":"m","ts":1,"redelivered":false,"contentType":"","topic":"news.x","data":1,"extra":2}',
  '{"type":"error","code":"c","message":"m","seq":-9007199254740992}',
  '\ufeff{"type":"ack","seq":1}',
  '{"type":"ack","seq":1}\u0000',
  '',
  ' ',
];

// Properties ---------------------------------------------------------------------------------

describe('the frame types declared without zod (frame-types.ts)', () => {
  it('are exactly what the zod schemas parse to (checked by the compiler)', () => {
    expectTypeOf<z.output<typeof clientFrameSchema>>().toEqualTypeOf<ClientFrame>();
    expectTypeOf<z.output<typeof serverFrameSchema>>().toEqualTypeOf<ServerFrame>();
  });
});

describe('decodeClientFrame (the relay reads client frames)', () => {
  it('never throws on any text, and refuses what is not a valid frame', () => {
    fc.assert(fc.property(anyText, agreesClient), runs(400));
  });

  it('accepts exactly the valid frames among objects with the protocol keys and hostile values', () => {
    fc.assert(fc.property(nearFrameText(2_000), agreesClient), runs(600));
  });

  it('accepts exactly the valid frames among valid frames with fields set, removed or replaced', () => {
    fc.assert(
      fc.property(clientFrame, fc.array(mutation(2_000), { minLength: 1, maxLength: 3 }), (frame, changes) =>
        agreesClient(mutate(frame, changes)),
      ),
      runs(600),
    );
  });

  it('accepts exactly the valid frames among valid frame texts with characters edited', () => {
    fc.assert(
      fc.property(clientFrame, fc.array(edit, { minLength: 1, maxLength: 4 }), (frame, edits) =>
        agreesClient(editText(encodeFrame(frame), edits)),
      ),
      runs(400),
    );
  });

  it('accepts each limited field exactly within its range (every limit, several spellings)', () => {
    for (const [type, fields] of Object.entries(CLIENT_LIMITS)) {
      const frames = clientFrames[type as keyof typeof clientFrames] as fc.Arbitrary<object>;
      for (const field of fields) {
        // Every value at every limit, each in a few random frames of the type (FC_SEED replays them).
        for (const raw of valuesAtLimits(field)) {
          fc.assert(
            fc.property(frames, (frame) => agreesClient(withField(frame, field.path, raw))),
            { ...runs(3), numRuns: 3 },
          );
        }
      }
    }
  });

  it('round-trips every valid frame through encodeFrame, and its text survives UTF-8', () => {
    fc.assert(
      fc.property(clientFrame, (frame) => {
        const encoded = encodeFrame(frame);
        expect(survivesUtf8(encoded)).toBe(true);
        expect(decodeClientFrame(encoded)).toEqual({ ok: true, frame });
      }),
      runs(400),
    );
  });

  it('handles the hostile inputs named in its comment', () => {
    for (const hostile of hostileTexts) agreesClient(hostile);
  });
});

describe('decodeServerFrame (the SDK reads relay frames)', () => {
  it('never throws on any text, and refuses what is not a valid frame', () => {
    fc.assert(fc.property(anyText, agreesServer), runs(400));
  });

  // Nesting is kept shallower here: a value that is nested deeply is compared by recursion.
  it('accepts exactly the valid frames among objects with the protocol keys and hostile values', () => {
    fc.assert(fc.property(nearFrameText(500), agreesServer), runs(600));
  });

  it('accepts exactly the valid frames among valid frames with fields set, removed or replaced', () => {
    fc.assert(
      fc.property(serverFrame, fc.array(mutation(500), { minLength: 1, maxLength: 3 }), (frame, changes) =>
        agreesServer(mutate(frame, changes)),
      ),
      runs(600),
    );
  });

  it('accepts exactly the valid frames among valid frame texts with characters edited', () => {
    fc.assert(
      fc.property(serverFrame, fc.array(edit, { minLength: 1, maxLength: 4 }), (frame, edits) =>
        agreesServer(editText(encodeFrame(frame), edits)),
      ),
      runs(400),
    );
  });

  it('accepts each limited field exactly within its range (every limit, several spellings)', () => {
    for (const [type, fields] of Object.entries(SERVER_LIMITS)) {
      const frames = serverFrames[type as keyof typeof serverFrames] as fc.Arbitrary<object>;
      for (const field of fields) {
        // Every value at every limit, each in a few random frames of the type (FC_SEED replays them).
        for (const raw of valuesAtLimits(field)) {
          fc.assert(
            fc.property(frames, (frame) => agreesServer(withField(frame, field.path, raw))),
            { ...runs(3), numRuns: 3 },
          );
        }
      }
    }
  });

  it('round-trips every valid frame through encodeFrame, and its text survives UTF-8', () => {
    fc.assert(
      fc.property(serverFrame, (frame) => {
        const encoded = encodeFrame(frame);
        expect(survivesUtf8(encoded)).toBe(true);
        expect(decodeServerFrame(encoded)).toEqual({ ok: true, frame });
      }),
      runs(400),
    );
  });

  it('handles the hostile inputs named in the comment, deep values included', () => {
    for (const hostile of hostileTexts) {
      const result = decodeServerFrame(hostile);
      expectPrototypeUntouched();
      expectSameAsSchema(hostile, false);
      const expected = serverOracle(parseJson(hostile));
      expect(result.ok).toBe(expected !== undefined);
      // Values nested this deep are too deep to compare by recursion; the type says enough.
      if (result.ok && expected) expect(result.frame.type).toBe(expected.type);
    }
  });
});

describe('msg frames the relay builds (message-codec) and the SDK reads', () => {
  const jsonType = fc.constantFrom('application/json', 'application/vnd.acme+json; charset=utf-8', 'APPLICATION/JSON', '', undefined);
  const isJsonType = (type: string) => /^(application\/json|.*\+json)$/i.test(type.split(';')[0]!.trim());
  const otherType = fc
    .oneof(fc.constantFrom('application/octet-stream', 'text/plain', 'image/png; x="a\\"b"'), text(1, 40))
    .filter((type) => !isJsonType(type));
  const messageId = fc
    .string({ unit: fc.oneof(unit, codeUnit), minLength: 1, maxLength: 255 })
    // What the codec takes as a messageId: 1-255 UTF-16 units, no control character.
    .filter((id) => id.length <= 255 && !Array.from(id).some((char) => char.charCodeAt(0) < 0x20 || char === '\u007f'));
  const jsonBody = fc.oneof(
    json.map((value) => JSON.stringify(value)),
    fc.constantFrom(
      '1e400',
      '-0',
      '9007199254740993',
      ' {"a": [1, 2]}\n',
      '"\\ud800"',
      '{"__proto__":{"polluted":true},"constructor":1}',
      '"\u2028"',
    ),
    fc.integer({ min: 1, max: 1000 }).map((depth) => nested(depth, '[', '', ']')),
  );
  const timestamp = fc.oneof(
    fc.constant(undefined),
    fc.maxSafeNat(),
    fc.double(),
    fc.constantFrom(0, -1, 1_700_000_000, 1_700_000_000_000, 'x'),
  );

  it('decode to the message: its id, timestamp, content type, topic and body (JSON as written, else base64)', () => {
    fc.assert(
      fc.property(
        seq,
        fc.boolean(),
        messageId,
        timestamp,
        fc.oneof(
          fc.record({ contentType: jsonType, body: jsonBody.map((body) => Buffer.from(body)) }),
          fc.record({ contentType: otherType, body: fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)) }),
        ),
        fc.option(fc.stringMatching(/^[A-Za-z0-9_-]{1,8}(\.[A-Za-z0-9_-]{1,8}){0,4}$/), { nil: undefined }),
        (n, redelivered, id, ts, { contentType, body }, topic) => {
          const decoded = decodeMessage(body, { messageId: id, contentType, timestamp: ts, headers: undefined, topic }, 1 << 20, 1_234);
          if (!decoded.ok) throw new Error(decoded.reason);
          const frame = msgFrame(n, redelivered, decoded.fragment);
          expect(survivesUtf8(frame)).toBe(true);
          const effectiveType = contentType === undefined || contentType === '' ? 'application/json' : contentType;
          const data = isJsonType(effectiveType) ? JSON.parse(body.toString('utf8')) : body.toString('base64');
          expect(decodeServerFrame(frame)).toEqual({
            ok: true,
            frame: {
              type: 'msg',
              seq: n,
              id,
              ts: decoded.ts,
              redelivered,
              contentType: effectiveType,
              ...(topic === undefined ? {} : { topic }),
              data,
            },
          });
        },
      ),
      runs(400),
    );
  });

  it('decode a JSON body nested as deep as MAX_MESSAGE_BYTES (1 MiB) allows', () => {
    const depth = 512 * 1024;
    const body = Buffer.from(nested(depth, '[', '', ']'));
    const decoded = decodeMessage(body, { messageId: 'deep', contentType: undefined, timestamp: 1, headers: undefined }, 1 << 20);
    if (!decoded.ok) throw new Error(decoded.reason);
    const result = decodeServerFrame(msgFrame(1, false, decoded.fragment));
    expect(result.ok && result.frame.type === 'msg' && Array.isArray(result.frame.data)).toBe(true);
  });
});
