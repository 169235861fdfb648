/**
 * STOMP 1.2 frames (no I/O): encoding with header escaping, and a decoder that takes text chunks
 * and yields whole frames, honouring `content-length` and skipping heart-beat newlines.
 */
export interface StompFrame {
  command: string;
  headers: Record<string, string>;
  body: string;
}

// CONNECT and CONNECTED frames are not escaped (STOMP 1.2, "Value Encoding").
const UNESCAPED = new Set(['CONNECT', 'CONNECTED']);

function escape(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\r/g, '\\r').replace(/\n/g, '\\n').replace(/:/g, '\\c');
}

function unescape(value: string): string {
  return value.replace(/\\(.)/g, (_, c: string) => (c === 'r' ? '\r' : c === 'n' ? '\n' : c === 'c' ? ':' : c));
}

export function encodeStompFrame(command: string, headers: Record<string, string>, body = ''): string {
  const plain = UNESCAPED.has(command);
  let text = `${command}\n`;
  for (const [name, value] of Object.entries(headers)) text += plain ? `${name}:${value}\n` : `${escape(name)}:${escape(value)}\n`;
  return `${text}\n${body}\0`;
}

export class StompDecoder {
  private buffer = '';

  /** Feeds one chunk of text; returns the frames it completed. Throws on a malformed frame. */
  push(chunk: string): StompFrame[] {
    this.buffer += chunk;
    const frames: StompFrame[] = [];
    for (;;) {
      // Heart-beats (EOLs) between frames.
      let start = 0;
      while (start < this.buffer.length && (this.buffer[start] === '\n' || this.buffer[start] === '\r')) start += 1;
      if (start > 0) this.buffer = this.buffer.slice(start);
      const headerEnd = this.buffer.indexOf('\n\n');
      if (headerEnd < 0) break;
      const lines = this.buffer
        .slice(0, headerEnd)
        .split('\n')
        .map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line));
      const command = lines[0] ?? '';
      const plain = UNESCAPED.has(command);
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        if (colon <= 0) throw new Error(`malformed STOMP header line: ${line.slice(0, 80)}`);
        const name = plain ? line.slice(0, colon) : unescape(line.slice(0, colon));
        // The first occurrence of a repeated header wins (STOMP 1.2).
        if (!(name in headers)) headers[name] = plain ? line.slice(colon + 1) : unescape(line.slice(colon + 1));
      }
      const bodyStart = headerEnd + 2;
      let bodyEnd: number;
      const length = headers['content-length'];
      if (length !== undefined) {
        // content-length counts bytes; our bodies are ASCII JSON, so bytes equal characters here.
        bodyEnd = bodyStart + Number(length);
        if (this.buffer.length < bodyEnd + 1) break;
      } else {
        bodyEnd = this.buffer.indexOf('\0', bodyStart);
        if (bodyEnd < 0) break;
      }
      frames.push({ command, headers, body: this.buffer.slice(bodyStart, bodyEnd) });
      this.buffer = this.buffer.slice(bodyEnd + 1);
    }
    return frames;
  }
}
