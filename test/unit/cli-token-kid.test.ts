/**
 * `inbox-relay token <user> --kid <kid>` (src/cli/commands/token.ts), run in-process: it signs
 * with the HS key of JWT_KEYS_FILE that has the kid and names the kid in the header, so the
 * relay's key selection accepts the token; it refuses RS keys (no private key), unknown kids,
 * --kid without a key set file, and minting with neither JWT_SECRET nor --kid.
 */
import jwt from 'jsonwebtoken';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { parseInvocation } from '../../src/cli/commands.js';
import { runCli } from '../../src/cli/run.js';
import { verifyToken } from '../../src/server/auth.js';
import { TokenKeys } from '../../src/server/token-keys.js';
import { KeySetFile, randomSecret, rsaKeyPair } from '../helpers/jwt-keys.js';

const file = new KeySetFile([
  { kid: 'k-hs', alg: 'HS384', secret: randomSecret() },
  { kid: 'k-rs', alg: 'RS256', publicKey: rsaKeyPair().publicPem },
]);
afterAll(() => file.remove());
const env = { JWT_KEYS_FILE: file.path, JWT_ALGORITHMS: 'HS384,RS256' };

async function token(
  args: string[],
  environment: Record<string, string>,
): Promise<{ code: number | 'running'; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(['token', ...args], {
    env: environment,
    stdout: (text) => {
      stdout += text;
    },
    stderr: (text) => {
      stderr += text;
    },
  });
  return { code, stdout, stderr };
}

describe('token --kid', () => {
  it('signs with the HS key of that kid, which the relay then selects by the kid in the header', async () => {
    const run = await token(['alice', '--kid', 'k-hs', '--ttl', '60'], env);
    expect(run.code, run.stderr).toBe(0);
    const printed = run.stdout.trim();
    expect(jwt.decode(printed, { complete: true })?.header).toMatchObject({ alg: 'HS384', kid: 'k-hs' });
    const result = await verifyToken(printed, new TokenKeys(loadConfig(env).jwt));
    expect(result).toMatchObject({ ok: true, identity: { user: 'alice' } });
    expect(parseInvocation(['token', 'alice', '--kid', 'k-hs']).values.kid).toBe('k-hs');
  });

  it('refuses an RS key, an unknown kid, --kid without JWT_KEYS_FILE, and no key to sign with (exit 2)', async () => {
    const cases: [string[], Record<string, string>, RegExp][] = [
      [['alice', '--kid', 'k-rs'], env, /key "k-rs" is RS256; the CLI signs only with HS\* keys/],
      [['alice', '--kid', 'k-gone'], env, /JWT_KEYS_FILE has no key with kid "k-gone" \(it has: k-hs, k-rs\)/],
      [['alice', '--kid', 'k-hs'], { JWT_SECRET: randomSecret() }, /--kid needs JWT_KEYS_FILE/],
      [['alice'], env, /minting needs JWT_SECRET \(HS\*\), or --kid <kid>/],
    ];
    for (const [args, environment, message] of cases) {
      const run = await token(args, environment);
      expect(run.code, String(message)).toBe(2);
      expect(run.stderr).toMatch(message);
      expect(run.stdout).toBe('');
    }
  });
});
