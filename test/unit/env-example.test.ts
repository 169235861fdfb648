/**
 * `.env.example` is the newcomer's first configuration: every variable it sets or shows (also
 * commented out) must be one the relay reads, or the copy would configure nothing.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { configVariables, text } from '../helpers/ops-files.js';

const lines = text('.env.example').split('\n');
/** `NAME=value` lines, and `# NAME=value` lines that show a variable to set. */
const assignments = lines.flatMap((line) => {
  const match = /^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$/.exec(line.trim());
  return match ? [{ name: match[2]!, value: match[3]!, commented: match[1] !== undefined }] : [];
});

describe('.env.example', () => {
  it('names only variables the relay reads', () => {
    const known = configVariables();
    expect(assignments.length).toBeGreaterThanOrEqual(5);
    for (const { name } of assignments) expect(known.has(name), `${name} is not read by src/config.ts`).toBe(true);
  });

  it('shows JWT_SECRET without a value, so nobody runs with a published secret', () => {
    expect(assignments.filter(({ name }) => name === 'JWT_SECRET')).toEqual([{ name: 'JWT_SECRET', value: '', commented: true }]);
  });

  it('is a valid configuration once a JWT_SECRET is added', () => {
    const env = Object.fromEntries(assignments.filter(({ commented }) => !commented).map(({ name, value }) => [name, value]));
    const config = loadConfig({ ...env, JWT_SECRET: '5f0c9e2d7a41b8c36e9d0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e' });
    expect(config).toMatchObject({ port: 8080, adminPort: 9090, logLevel: 'info', allowedOrigins: ['http://localhost:5173'] });
  });
});
