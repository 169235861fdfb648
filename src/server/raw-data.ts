/**
 * Text of a ws `message` event's data. ws hands a text frame over as one Buffer, but a binary
 * frame arrives as a Buffer, an ArrayBuffer or a Buffer[] (one per fragment) depending on the
 * socket's `binaryType`; `String()` on a Buffer[] would join the fragments with commas. Kept in
 * src/server, not src/protocol, because it needs Node's Buffer and src/protocol ships to browsers.
 */
import type { RawData } from 'ws';

/** Decodes `data` as UTF-8, whichever of the three shapes ws delivered it in; fragments are joined byte for byte. */
export function rawDataToString(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString('utf8');
  return data.toString('utf8');
}
