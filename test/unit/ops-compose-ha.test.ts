/**
 * The docker-compose profile "ha": a 3-node RabbitMQ cluster and Redis with a replica and three
 * sentinels, beside the default stack and without changing it. Checked from the files (no Docker
 * engine here): which services the profile adds, how the nodes find each other and share the
 * Erlang cookie, how Redis replicates and the sentinels are configured, and what Prometheus scrapes.
 */
import { describe, expect, it } from 'vitest';
import type { parse as parseYaml } from 'yaml';
import { exists, interpolate, mountsOf, rabbitmqConf, text, yamlFile } from '../helpers/ops-files.js';

type Obj = Record<string, ReturnType<typeof parseYaml>>;

const REDIS_PASSWORD = 'redis-ha-0123456789abcdef';
/** The variables the default stack requires (docker-compose.yml's header generates them). */
const REQUIRED = ['JWT_SECRET', 'ADMIN_TOKEN', 'REDIS_PASSWORD'];

const compose = yamlFile<Obj>('docker-compose.yml');
const services = compose.services as Obj;
const inProfile = (name: string): boolean => ((services[name].profiles ?? []) as string[]).includes('ha');
const ha = Object.keys(services).filter(inProfile);
const rabbitNodes = ha.filter((name) => /^rabbitmq-ha\d$/.test(name)).sort();
const redisServers = ha.filter((name) => /^redis-ha-\d$/.test(name)).sort();
const sentinels = ha.filter((name) => /^sentinel-\d$/.test(name)).sort();
const words = (name: string): string[] => (services[name].command as string[]).map((word) => interpolate(word, { REDIS_PASSWORD }));
const option = (command: string[], flag: string): string | undefined => {
  const at = command.indexOf(flag);
  return at < 0 ? undefined : command[at + 1];
};

/** The `sentinel ...` and other directives of the sentinel template, as word lists. */
const sentinelTemplate = text('ops/redis/sentinel.conf')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line !== '' && !line.startsWith('#'))
  .map((line) => line.split(/\s+/));

describe('docker-compose.yml profile "ha"', () => {
  it('adds exactly a 3-node RabbitMQ cluster, two Redis servers and three sentinels, all in profile ha only', () => {
    expect(rabbitNodes).toEqual(['rabbitmq-ha1', 'rabbitmq-ha2', 'rabbitmq-ha3']);
    expect(redisServers).toEqual(['redis-ha-1', 'redis-ha-2']);
    expect(sentinels).toEqual(['sentinel-1', 'sentinel-2', 'sentinel-3']);
    expect(ha.sort()).toEqual([...rabbitNodes, ...redisServers, ...sentinels].sort());
    for (const name of ha) expect(services[name].profiles, name).toEqual(['ha']);
  });

  it('leaves the default stack alone: no default service depends on the profile, and it requires no new variable', () => {
    for (const [name, service] of Object.entries(services)) {
      if (inProfile(name)) continue;
      const dependsOn = Array.isArray(service.depends_on) ? service.depends_on : Object.keys(service.depends_on ?? {});
      for (const dependency of dependsOn as string[]) expect(inProfile(dependency), `${name} depends on ${dependency}`).toBe(false);
    }
    // compose interpolates the whole file whatever the profile: a ${VAR:?} only the profile used
    // would stop `docker compose up` of the default stack.
    const required = new Set([...text('docker-compose.yml').matchAll(/\$\{([A-Z0-9_]+):\?/g)].map((match) => match[1]!));
    expect([...required].sort()).toEqual([...REQUIRED].sort());
  });

  describe('RabbitMQ cluster', () => {
    const conf = rabbitmqConf('ops/rabbitmq/cluster.conf');

    it('runs the image and settings of the rabbitmq service on every node, plus cluster.conf, each with its own data', () => {
      const single = services.rabbitmq;
      const singleMounts = mountsOf(single.volumes as string[]);
      const dataVolumes = new Set<string>();
      for (const name of rabbitNodes) {
        const node = services[name];
        expect(node.image, name).toBe(single.image);
        expect(node.hostname, name).toBe(name);
        expect(node.ulimits, name).toEqual(single.ulimits);
        expect(node.healthcheck.test, name).toEqual(single.healthcheck.test);
        const mounts = mountsOf(node.volumes as string[]);
        for (const [target, source] of singleMounts) {
          if (source.startsWith('./')) expect(mounts.get(target), `${name} ${target}`).toBe(source);
        }
        expect(mounts.get('/etc/rabbitmq/conf.d/40-cluster.conf'), name).toBe('./ops/rabbitmq/cluster.conf');
        const data = mounts.get('/var/lib/rabbitmq');
        expect(data, name).toBeDefined();
        expect(data!.startsWith('./'), `${name}: a named volume`).toBe(false);
        dataVolumes.add(data!);
        expect(compose.volumes, data).toHaveProperty(data!);
      }
      expect(dataVolumes.size).toBe(rabbitNodes.length);
      expect(exists('ops/rabbitmq/cluster.conf')).toBe(true);
    });

    it('forms the cluster by classic peer discovery of exactly its three nodes, pausing a minority', () => {
      expect(conf.get('cluster_formation.peer_discovery_backend')).toBe('classic_config');
      const listed = [...conf].filter(([key]) => key.startsWith('cluster_formation.classic_config.nodes.')).map(([, value]) => value);
      expect(listed.sort()).toEqual(rabbitNodes.map((name) => `rabbit@${services[name].hostname}`).sort());
      expect(conf.get('cluster_partition_handling')).toBe('pause_minority');
      expect(['client-local', 'balanced']).toContain(conf.get('queue_leader_locator'));
    });

    it('gives every node the same Erlang cookie, from the environment, written to the cookie file before the node starts', () => {
      for (const name of rabbitNodes) {
        const node = services[name];
        expect(node.environment.RABBITMQ_ERLANG_COOKIE, `${name}: RabbitMQ's own variable is deprecated`).toBeUndefined();
        expect(String(services[name].environment.ERLANG_COOKIE), name).toBe('${RABBITMQ_ERLANG_COOKIE:-}');
        const [shell, flag, script] = node.command as string[];
        expect([shell, flag], name).toEqual(['sh', '-c']);
        expect(script, name).toMatch(/if \[ -z "\$\$ERLANG_COOKIE" \]; then[\s\S]*exit 1/);
        expect(script, name).toContain(`printf '%s' "$$ERLANG_COOKIE" > /var/lib/rabbitmq/.erlang.cookie`);
        expect(script, name).toContain('chmod 400 /var/lib/rabbitmq/.erlang.cookie');
        expect(script, name).toContain('chown rabbitmq:rabbitmq /var/lib/rabbitmq/.erlang.cookie');
        // The image's entrypoint then drops root and starts the node.
        expect(script!.trim().split('\n').at(-1), name).toBe('exec docker-entrypoint.sh rabbitmq-server');
      }
      expect(text('docker-compose.yml'), 'the header generates it with the other secrets').toContain('RABBITMQ_ERLANG_COOKIE=%s');
    });

    it('is scraped by Prometheus, every node, in a job of its own', () => {
      const config = yamlFile<Obj>('ops/prometheus/prometheus.yml');
      const job = (config.scrape_configs as Obj[]).find((entry) => entry.job_name === 'rabbitmq-ha');
      expect(job?.static_configs[0].targets).toEqual(rabbitNodes.map((name) => `${name}:15692`));
      expect(text('ops/rabbitmq/enabled_plugins')).toContain('rabbitmq_prometheus');
    });
  });

  describe('Redis with Sentinel', () => {
    it('runs a primary and its replica with AOF, the stack password for clients and for replication, each with its own data', () => {
      const [primary, replica] = redisServers as [string, string];
      const dataVolumes = new Set<string>();
      for (const name of redisServers) {
        const command = words(name);
        expect(command[0], `${name}: the entrypoint drops root`).toBe('redis-server');
        expect(option(command, '--appendonly'), name).toBe('yes');
        expect(option(command, '--requirepass'), name).toBe(REDIS_PASSWORD);
        expect(option(command, '--masterauth'), `${name} may become a replica`).toBe(REDIS_PASSWORD);
        expect(option(command, '--replica-announce-ip'), name).toBe(services[name].hostname);
        expect(services[name].hostname, name).toBe(name);
        expect(services[name].image, name).toBe(services.redis.image);
        expect(services[name].healthcheck.test, name).toEqual(services.redis.healthcheck.test);
        expect(interpolate(String(services[name].environment.REDISCLI_AUTH), { REDIS_PASSWORD }), name).toBe(REDIS_PASSWORD);
        const data = mountsOf(services[name].volumes as string[]).get('/data');
        expect(compose.volumes, name).toHaveProperty(data!);
        dataVolumes.add(data!);
      }
      expect(dataVolumes.size).toBe(2);
      expect(option(words(primary), '--replicaof')).toBeUndefined();
      const replicaCommand = words(replica);
      expect(replicaCommand.slice(replicaCommand.indexOf('--replicaof') + 1, replicaCommand.indexOf('--replicaof') + 3)).toEqual([
        primary,
        '6379',
      ]);
    });

    it('has three sentinels watching the primary under the name inbox-relay, a majority needed to fail over', () => {
      const monitor = sentinelTemplate.find((line) => line[0] === 'sentinel' && line[1] === 'monitor');
      expect(monitor).toBeDefined();
      const [, , name, host, port, quorum] = monitor!;
      expect(name).toBe('inbox-relay');
      expect([host, port]).toEqual([redisServers[0], '6379']);
      expect(Number(quorum)).toBeGreaterThan(sentinels.length / 2);
      expect(Number(quorum)).toBeLessThanOrEqual(sentinels.length);
      // Host names in `sentinel monitor` need resolve-hostnames before it; clients get host names.
      const resolve = sentinelTemplate.findIndex((line) => line.join(' ') === 'sentinel resolve-hostnames yes');
      expect(resolve).toBeGreaterThanOrEqual(0);
      expect(resolve).toBeLessThan(sentinelTemplate.indexOf(monitor!));
      expect(sentinelTemplate.map((line) => line.join(' '))).toContain('sentinel announce-hostnames yes');
      for (const line of sentinelTemplate.filter(
        (directive) => directive[0] === 'sentinel' && directive.length >= 3 && directive[1] !== 'monitor',
      )) {
        if (['down-after-milliseconds', 'failover-timeout', 'parallel-syncs', 'auth-pass'].includes(line[1]!)) {
          expect(line[2], line.join(' ')).toBe('inbox-relay');
        }
      }
    });

    it('runs each sentinel on its own writable copy of the template, with the passwords from the environment', () => {
      for (const name of sentinels) {
        const sentinel = services[name];
        expect(sentinel.image, name).toBe(services.redis.image);
        expect(sentinel.hostname, name).toBe(name);
        const mounts = mountsOf(sentinel.volumes as string[]);
        expect(mounts.get('/etc/redis/sentinel.conf'), name).toBe('./ops/redis/sentinel.conf');
        expect(
          (sentinel.volumes as string[]).find((volume) => volume.startsWith('./ops/redis/sentinel.conf:')),
          name,
        ).toMatch(/:ro$/);
        expect(compose.volumes, name).toHaveProperty(mounts.get('/data')!);
        expect(String(services[name].environment.REDIS_PASSWORD), name).toMatch(/^\$\{REDIS_PASSWORD:\?[^}]+\}$/);
        const [shell, flag, script] = sentinel.command as string[];
        expect([shell, flag], name).toEqual(['sh', '-c']);
        expect(script, `${name}: copied once, then rewritten by the sentinel`).toMatch(
          /if \[ ! -f \/data\/sentinel\.conf \]; then\s+cp \/etc\/redis\/sentinel\.conf \/data\/sentinel\.conf/,
        );
        for (const line of [
          'sentinel auth-pass inbox-relay $$REDIS_PASSWORD',
          'requirepass $$REDIS_PASSWORD',
          'sentinel sentinel-pass $$REDIS_PASSWORD',
        ]) {
          expect(script, name).toContain(`echo "${line}"`);
        }
        expect(script!.trim().split('\n').at(-1), name).toBe('exec docker-entrypoint.sh redis-server /data/sentinel.conf --sentinel');
        expect(sentinel.depends_on[redisServers[0]!].condition, name).toBe('service_healthy');
      }
      expect(new Set(sentinels.map((name) => mountsOf(services[name].volumes as string[]).get('/data'))).size).toBe(sentinels.length);
    });
  });
});
