/**
 * The two packages' manifests agree where they must: `@inbox-relay/client` has the version of
 * `inbox-relay` (they are released together), depends on nothing at run time, carries the same
 * LICENSE, and is a workspace of the repository; every subpath entry of `inbox-relay` has its
 * types listed for moduleResolution node10 (typesVersions), which ignores `exports`.
 * What the tarballs contain and how they install: test/integration/package-install.test.ts.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

interface Manifest {
  name: string;
  version: string;
  license: string;
  workspaces?: string[];
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  exports: Record<string, string | { types: string; default: string }>;
  types: string;
  typesVersions?: Record<string, Record<string, string[]>>;
}

const read = (path: string): string => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');
const relay = JSON.parse(read('package.json')) as Manifest;
const client = JSON.parse(read('packages/client/package.json')) as Manifest;

describe('@inbox-relay/client package', () => {
  it('has the version of inbox-relay', () => {
    expect(client.name).toBe('@inbox-relay/client');
    expect(client.version).toBe(relay.version);
  });

  it('has no runtime dependency: ws only as an optional peer (Node 20 has no global WebSocket)', () => {
    expect(client.dependencies ?? {}).toEqual({});
    expect(client.optionalDependencies ?? {}).toEqual({});
    expect(Object.keys(client.peerDependencies ?? {})).toEqual(['ws']);
    expect(client.peerDependenciesMeta?.ws?.optional).toBe(true);
  });

  it('carries the license of inbox-relay', () => {
    expect(client.license).toBe(relay.license);
    expect(read('packages/client/LICENSE')).toBe(read('LICENSE'));
  });

  it('is a workspace of the repository', () => {
    expect(relay.workspaces).toContain('packages/client');
  });
});

describe('inbox-relay package', () => {
  it('lists the types of every subpath entry for node10, as its exports do', () => {
    const subpaths = Object.entries(relay.exports).flatMap(([path, target]) =>
      path === '.' || typeof target === 'string' ? [] : [[path.slice(2), [target.types]] as const],
    );
    expect(relay.typesVersions?.['*']).toEqual(Object.fromEntries(subpaths));
    expect(relay.types).toBe((relay.exports['.'] as { types: string }).types);
  });
});
