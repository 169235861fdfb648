import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BATCH } from '../../src/store/lua/scripts.generated.js';

const dir = 'src/store/lua';

describe('the generated store script', () => {
  it('is what scripts/build-lua.mjs makes of the .lua files now', () => {
    const check = spawnSync(process.execPath, ['scripts/build-lua.mjs', '--check'], { encoding: 'utf8' });
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);
  });

  it('holds every .lua file, the prelude first and the dispatcher last', () => {
    const files = readdirSync(dir).filter((file) => file.endsWith('.lua'));
    expect(files.length).toBeGreaterThanOrEqual(10);
    const at = (file: string) => BATCH.indexOf(readFileSync(`${dir}/${file}`, 'utf8').trimEnd());
    const positions = files.map(at);
    expect(positions.filter((position) => position < 0)).toEqual([]);
    expect(Math.min(...positions)).toBe(at('prelude.lua'));
    expect(Math.max(...positions)).toBe(at('dispatch.lua'));
  });
});
