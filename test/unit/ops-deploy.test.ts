/**
 * The deployment files agree with the code: docker-compose.yml, ops/Dockerfile, the RabbitMQ
 * configuration and definitions (the exact topology src/amqp/topology.ts declares), Prometheus
 * and Grafana provisioning, and the Kubernetes manifests.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import type { Channel } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { declareSharedTopology } from '../../src/amqp/topology.js';
import { DEFAULTS, loadConfig } from '../../src/config.js';
import { RelayEvents } from '../../src/events.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { routeAdminRequest } from '../../src/server/admin-server.js';
import { isLoopback } from '../../src/server/security-warnings.js';
import {
  configVariables,
  exists,
  filesIn,
  haproxySections,
  interpolate,
  json,
  mountsOf,
  rabbitmqConf,
  text,
  yamlDocuments,
  yamlFile,
  type HaproxySection,
} from '../helpers/ops-files.js';
import { exposedSeries } from '../helpers/ops-prometheus.js';

/** A parsed manifest node, typed as the YAML parser returns it: tests walk into it, and a wrong field fails the assertion that reads it. */
type Obj = Record<string, ReturnType<typeof parseYaml>>;

/** Stand-ins for the secrets the deployments take from the environment or a Secret (strong enough for loadConfig). */
const SECRET = 'deploy-0123456789-abcdefghijklmnopqrstuvwxyz';
const ADMIN_TOKEN = 'admin-deploy-0123456789-abcdefghijklmnopqrstuvwxyz';
const REDIS_PASSWORD = 'redis-deploy-0123456789abcdef';
/** What docker compose substitutes for the variables the stack requires. */
const COMPOSE_VARIABLES = { JWT_SECRET: SECRET, ADMIN_TOKEN, REDIS_PASSWORD };

/** What the relay's admin listener answers a request that carries no credentials (probes, health checks). */
function anonymous(config: ReturnType<typeof loadConfig>, method: string, path: string): string {
  const tokenDigest = config.adminToken === undefined ? undefined : createHash('sha256').update(config.adminToken).digest();
  return routeAdminRequest(
    { method, url: path, authorization: undefined },
    { tokenDigest, metricsRequireToken: config.metricsRequireToken },
  );
}

interface Declared {
  exchanges: { name: string; type: string; durable: boolean; arguments: Obj }[];
  queues: { name: string; durable: boolean; arguments: Obj }[];
  bindings: { source: string; destination: string; routing_key: string }[];
}

/** What declareSharedTopology asks of RabbitMQ, recorded through a fake channel. */
async function declaredTopology(): Promise<Declared> {
  const declared: Declared = { exchanges: [], queues: [], bindings: [] };
  const channel = {
    assertExchange: async (name: string, type: string, options: Obj = {}) => {
      declared.exchanges.push({ name, type, durable: options.durable ?? true, arguments: options.arguments ?? {} });
    },
    assertQueue: async (name: string, options: Obj = {}) => {
      declared.queues.push({ name, durable: options.durable ?? true, arguments: options.arguments ?? {} });
    },
    bindQueue: async (destination: string, source: string, key: string) => {
      declared.bindings.push({ source, destination, routing_key: key });
    },
    checkQueue: async () => ({}),
    close: async () => undefined,
  };
  const config = loadConfig({ JWT_SECRET: SECRET });
  await declareSharedTopology(async () => channel as unknown as Channel, {
    queueType: config.queueType,
    queueMaxLength: config.queueMaxLength,
    queueDeliveryLimit: config.queueDeliveryLimit,
  });
  return declared;
}

function byName<T extends { name: string }>(items: T[]): T[] {
  return [...items].sort((a, b) => a.name.localeCompare(b.name));
}

/** Parses the `key = value` lines of rabbitmq.conf. */
function rabbitConf(): Map<string, string> {
  return rabbitmqConf('ops/rabbitmq/rabbitmq.conf');
}

function expectKnownVariables(env: Record<string, unknown>, where: string): void {
  const known = configVariables();
  for (const name of Object.keys(env)) expect(known.has(name), `${where}: ${name} is not read by src/config.ts`).toBe(true);
}

async function exposedMetricNames(): Promise<Set<string>> {
  const metrics = createMetrics(new RelayEvents(), { connections: () => 0, streams: () => 0, inflight: () => 0 });
  try {
    return exposedSeries(await metrics.render());
  } finally {
    metrics.close();
  }
}

describe('docker-compose.yml', () => {
  const compose = yamlFile<Obj>('docker-compose.yml');
  const services = compose.services as Obj;
  const relayNames = Object.keys(services).filter((name) => /^relay\d+$/.test(name));
  const relays = relayNames.map((name) => ({ name, service: services[name] as Obj }));
  const relayEnv = (service: Obj): Record<string, string> =>
    Object.fromEntries(
      Object.entries(service.environment as Obj).map(([key, value]) => [key, interpolate(String(value), COMPOSE_VARIABLES)]),
    );
  const relayConfig = loadConfig(relayEnv(relays[0]!.service));
  const adminPort = relayConfig.adminPort;

  it('runs RabbitMQ, Redis, three relay nodes behind a load balancer, Prometheus and Grafana (the services of no profile)', () => {
    expect(relayNames).toEqual(['relay1', 'relay2', 'relay3']);
    const always = Object.keys(services).filter((name) => services[name].profiles === undefined);
    expect(always.sort()).toEqual(['grafana', 'lb', 'prometheus', 'rabbitmq', 'redis', ...relayNames].sort());
  });

  it('runs a current RabbitMQ with the management and prometheus plugins, raised nofile and a consumer timeout', () => {
    const rabbit = services.rabbitmq;
    expect(rabbit.image).toMatch(/^rabbitmq:4\.\d+-management$/);
    expect(rabbit.ulimits.nofile.soft).toBeGreaterThanOrEqual(65_536);
    expect(rabbit.ulimits.nofile.hard).toBeGreaterThanOrEqual(rabbit.ulimits.nofile.soft);
    const mounts = mountsOf(rabbit.volumes as string[]);
    expect(mounts.get('/etc/rabbitmq/enabled_plugins')).toBe('./ops/rabbitmq/enabled_plugins');
    expect(mounts.get('/etc/rabbitmq/definitions.json')).toBe('./ops/rabbitmq/definitions.json');
    expect(mounts.get('/etc/rabbitmq/conf.d/30-inbox-relay.conf')).toBe('./ops/rabbitmq/rabbitmq.conf');
    for (const [, source] of mounts) if (source.startsWith('./')) expect(exists(source), source).toBe(true);
    const plugins = text('ops/rabbitmq/enabled_plugins').trim();
    expect(plugins).toMatch(/^\[.*\]\.$/);
    expect(plugins).toContain('rabbitmq_management');
    expect(plugins).toContain('rabbitmq_prometheus');
    const conf = rabbitConf();
    expect(conf.get('load_definitions')).toBe('/etc/rabbitmq/definitions.json');
    expect(Number(conf.get('consumer_timeout'))).toBeGreaterThan(DEFAULTS.ackTimeoutMs);
    expect(Number(conf.get('channel_max'))).toBeGreaterThan(DEFAULTS.channelsPerConnection);
  });

  it('runs Redis with AOF on and a data volume', () => {
    const redis = services.redis;
    expect(redis.command.join(' ')).toMatch(/--appendonly yes/);
    expect(redis.volumes.some((volume: string) => volume.endsWith(':/data'))).toBe(true);
  });

  it('runs Redis with a password from the environment, which the relays and the health check use', () => {
    const redis = services.redis;
    const command = (redis.command as string[]).map((word) => interpolate(word, COMPOSE_VARIABLES));
    // redis-server first: the image's entrypoint then drops root before starting it.
    expect(command[0]).toBe('redis-server');
    expect(command[command.indexOf('--requirepass') + 1]).toBe(REDIS_PASSWORD);
    const raw = (redis.command as string[])[command.indexOf('--requirepass') + 1];
    expect(raw, 'required: compose refuses to start without it').toMatch(/^\$\{REDIS_PASSWORD:\?[^}]+\}$/);
    expect(interpolate(String(redis.environment.REDISCLI_AUTH), COMPOSE_VARIABLES)).toBe(REDIS_PASSWORD);
    // redis-cli exits 0 on NOAUTH too: the check must look for PONG.
    const check = redis.healthcheck.test as string[];
    expect(check[0]).toBe('CMD-SHELL');
    expect(check[1]).toMatch(/^redis-cli ping \| grep -qx PONG$/);
    for (const { name, service } of relays) {
      const url = new URL(loadConfig(relayEnv(service)).redisUrl!);
      expect(decodeURIComponent(url.password), name).toBe(REDIS_PASSWORD);
      expect(url.username, name).toBe('');
    }
  });

  it('builds every relay node from ops/Dockerfile with a configuration the relay accepts and its own NODE_ID', () => {
    const nodeIds = new Set<string>();
    for (const { name, service } of relays) {
      expect(service.build, name).toEqual({ context: '.', dockerfile: 'ops/Dockerfile' });
      const env = relayEnv(service);
      expect(env, name).toMatchObject({ PORT: '8080', ADMIN_PORT: '9090' });
      for (const variable of ['RABBITMQ_URL', 'REDIS_URL', 'JWT_SECRET', 'NODE_ID', 'ADMIN_TOKEN'])
        expect(env[variable], `${name} ${variable}`).toBeDefined();
      expectKnownVariables(env, `docker-compose ${name}`);
      const config = loadConfig(env);
      expect(config.nodeId, name).toBe(env.NODE_ID);
      nodeIds.add(config.nodeId);
      expect(new URL(config.rabbitmqUrl).hostname).toBe('rabbitmq');
      expect(new URL(config.redisUrl!).hostname).toBe('redis');
      expect(service.depends_on.rabbitmq.condition, name).toBe('service_healthy');
      expect(service.depends_on.redis.condition, name).toBe('service_healthy');
      const grace = /^(\d+)s$/.exec(service.stop_grace_period);
      expect(Number(grace?.[1]) * 1000, name).toBeGreaterThan(config.drainTimeoutMs);
    }
    expect(nodeIds.size).toBe(relays.length);
  });

  it('publishes no relay port to the host: clients come through the load balancer, Prometheus scrapes inside the network', () => {
    for (const { name, service } of relays) expect(service.ports, name).toBeUndefined();
  });

  it('publishes every port on 127.0.0.1 only; the client port by default, with LB_BIND_ADDRESS to open it', () => {
    const published: string[] = [];
    for (const [name, service] of Object.entries(services)) {
      for (const port of (service.ports ?? []) as unknown[]) {
        // Short syntax only: the long one (target/published/host_ip) would need its own check.
        expect(typeof port, `${name}: ${JSON.stringify(port)}`).toBe('string');
        const raw = String(port);
        const [address, host, container, ...rest] = interpolate(raw, {}).split(':');
        expect(rest, `${name}: ${raw}`).toEqual([]);
        expect(address, `${name}: ${raw} must name 127.0.0.1 (a bare host:container port listens on every interface)`).toBe('127.0.0.1');
        expect(Number(host), `${name}: ${raw}`).toBeGreaterThan(0);
        expect(Number(container), `${name}: ${raw}`).toBeGreaterThan(0);
        if (raw.startsWith('$')) published.push(`${name} ${raw}`);
      }
    }
    // The one address a variable may change: the load balancer's client port.
    expect(published).toEqual([`lb \${LB_BIND_ADDRESS:-127.0.0.1}:${DEFAULTS.port}:${DEFAULTS.port}`]);
    expect(interpolate(published[0]!.slice(3), { LB_BIND_ADDRESS: '0.0.0.0' })).toBe(`0.0.0.0:${DEFAULTS.port}:${DEFAULTS.port}`);
  });

  it('opens the admin port to the compose network on purpose, and guards POST /drain with ADMIN_TOKEN from the environment', () => {
    for (const { name, service } of relays) {
      const raw = service.environment as Obj;
      // Set explicitly: the relay's default (127.0.0.1) would hide it from the health check and Prometheus.
      expect(raw.ADMIN_HOST, name).toBe('0.0.0.0');
      expect(String(raw.ADMIN_TOKEN), name).toMatch(/^\$\{ADMIN_TOKEN:\?[^}]+\}$/);
      const config = loadConfig(relayEnv(service));
      expect(config.adminToken, name).toBe(ADMIN_TOKEN);
      expect(anonymous(config, 'POST', '/drain'), name).toBe('unauthorized');
    }
    for (const variable of Object.keys(COMPOSE_VARIABLES)) {
      expect(text('docker-compose.yml'), variable).toContain(`${variable}=$(openssl rand -hex 32)`);
      expect(text('docker-compose.yml'), variable).toContain(`${variable}=%s`);
    }
  });

  describe('load balancer', () => {
    const lb = services.lb;
    const sections = haproxySections('ops/haproxy/haproxy.cfg');
    const section = (kind: string, name = ''): HaproxySection => {
      const found = sections.find((candidate) => candidate.kind === kind && candidate.name === name);
      if (!found) throw new Error(`haproxy.cfg has no ${kind} ${name}`);
      return found;
    };
    const settings = (where: HaproxySection, keyword: string): string[][] => where.lines.filter((words) => words[0] === keyword);
    const setting = (where: HaproxySection, ...words: string[]): string[] | undefined =>
      where.lines.find((line) => words.every((word, i) => line[i] === word));
    const frontend = section('frontend', 'websocket');
    const backendName = setting(frontend, 'default_backend')?.[1] ?? '';
    const backend = section('backend', backendName);
    const defaults = section('defaults');

    it('is HAProxy pinned to an exact version, with ops/haproxy/haproxy.cfg, publishing the client port', () => {
      expect(lb.image).toMatch(/^haproxy:\d+\.\d+\.\d+(-alpine)?$/);
      expect(mountsOf(lb.volumes as string[]).get('/usr/local/etc/haproxy/haproxy.cfg')).toBe('./ops/haproxy/haproxy.cfg');
      const bind = setting(frontend, 'bind')?.[1];
      expect(bind).toMatch(/^:\d+$/);
      expect((lb.ports as string[]).map((port) => interpolate(port, {}))).toContain(`127.0.0.1:${DEFAULTS.port}${bind}`);
      expect([...relayNames].sort()).toEqual([...(lb.depends_on as string[])].sort());
    });

    it('spreads connections round robin over every relay node, with no affinity', () => {
      expect(setting(backend, 'balance')).toEqual(['balance', 'roundrobin']);
      for (const where of [defaults, frontend, backend]) {
        for (const keyword of ['stick', 'stick-table', 'cookie', 'hash-type', 'hash-balance-factor', 'persist']) {
          expect(settings(where, keyword), `${where.kind} ${where.name}: ${keyword}`).toEqual([]);
        }
      }
      const servers = settings(backend, 'server').map(([, name, address]) => ({ name, address }));
      expect(servers).toEqual(relays.map(({ name, service }) => ({ name, address: `${name}:${relayEnv(service).PORT}` })));
    });

    it('passes WebSocket upgrades and keeps tunnels open longer than the relay heartbeat', () => {
      const mode = setting(backend, 'mode') ?? setting(defaults, 'mode');
      expect(mode?.[1]).toBe('http');
      const tunnel = setting(backend, 'timeout', 'tunnel') ?? setting(defaults, 'timeout', 'tunnel');
      const match = /^(\d+)(ms|s|m|h)$/.exec(tunnel?.[2] ?? '');
      expect(match, 'timeout tunnel').not.toBeNull();
      const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[match![2] as 'ms' | 's' | 'm' | 'h'];
      expect(Number(match![1]) * unit).toBeGreaterThan(2 * DEFAULTS.heartbeatMs);
    });

    it("takes a node out of rotation when the relay's /readyz on its admin port does not answer 200", () => {
      expect(setting(backend, 'option', 'httpchk')).toBeDefined();
      expect(setting(backend, 'http-check', 'send', 'meth', 'GET', 'uri', '/readyz')).toBeDefined();
      expect(setting(backend, 'http-check', 'expect', 'status', '200')).toBeDefined();
      const serverDefaults = setting(backend, 'default-server') ?? [];
      expect(serverDefaults).toContain('check');
      expect(serverDefaults[serverDefaults.indexOf('port') + 1]).toBe(String(adminPort));
    });

    it('health-checks a path the relay answers without a token, on an address the load balancer reaches', () => {
      const send = setting(backend, 'http-check', 'send') ?? [];
      const method = send[send.indexOf('meth') + 1] ?? '';
      const uri = send[send.indexOf('uri') + 1] ?? '';
      expect(anonymous(relayConfig, method, uri)).toBe('readyz');
      expect(isLoopback(relayConfig.adminHost)).toBe(false);
    });

    it('is accepted by haproxy -c when haproxy is installed', () => {
      try {
        execFileSync('haproxy', ['-c', '-f', 'ops/haproxy/haproxy.cfg'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (error) {
        if ((error as { code?: string }).code === 'ENOENT') return;
        throw error;
      }
    });
  });

  it('uses the RabbitMQ user that definitions.json creates for the relay, with its password', () => {
    const url = new URL(String(services.relay1.environment.RABBITMQ_URL));
    const definitions = json<Obj>('ops/rabbitmq/definitions.json');
    const user = (definitions.users as Obj[]).find((entry) => entry.name === decodeURIComponent(url.username));
    expect(user).toBeDefined();
    const hash = Buffer.from(user!.password_hash, 'base64');
    const salt = hash.subarray(0, 4);
    const expected = createHash('sha256')
      .update(Buffer.concat([salt, Buffer.from(decodeURIComponent(url.password))]))
      .digest();
    expect(hash.subarray(4).equals(expected)).toBe(true);
    // The relay's own rights only (test/unit/ops-rabbitmq-permissions.test.ts checks the patterns).
    const granted = (definitions.permissions as Obj[]).filter((entry) => entry.user === user!.name);
    expect(granted).toHaveLength(1);
    expect(granted[0]!.vhost).toBe('/');
    expect([granted[0]!.configure, granted[0]!.write, granted[0]!.read]).not.toContain('.*');
    expect(user!.tags).toEqual([]);
  });

  it('loads the alert rules into Prometheus and scrapes the admin port of every relay node', () => {
    const prometheus = services.prometheus;
    const mounts = mountsOf(prometheus.volumes as string[]);
    const config = yamlFile<Obj>('ops/prometheus/prometheus.yml');
    const ruleMount = [...mounts.entries()].find(([target]) => target.startsWith('/etc/prometheus/rules/'));
    expect(ruleMount?.[1]).toBe('./ops/prometheus/alerts.yml');
    const globs = (config.rule_files as string[]).map((glob) => new RegExp(`^${glob.replace(/\./g, '\\.').replace(/\*/g, '[^/]*')}$`));
    expect(globs.some((glob) => glob.test(ruleMount![0]))).toBe(true);
    expect(mounts.get('/etc/prometheus/prometheus.yml')).toBe('./ops/prometheus/prometheus.yml');
    const relayJob = (config.scrape_configs as Obj[]).find((job) => job.job_name === 'inbox-relay');
    expect(relayJob?.metrics_path).toBe('/metrics');
    expect(relayJob?.static_configs[0].targets).toEqual(relayNames.map((name) => `${name}:${adminPort}`));
    expect([...(prometheus.depends_on as string[])].sort()).toEqual([...relayNames].sort());
  });

  it('lets Prometheus scrape /metrics: without a token while METRICS_REQUIRE_TOKEN is off (the default), with one when on', () => {
    const config = yamlFile<Obj>('ops/prometheus/prometheus.yml');
    const relayJob = (config.scrape_configs as Obj[]).find((job) => job.job_name === 'inbox-relay')!;
    for (const { name, service } of relays) {
      const relay = loadConfig(relayEnv(service));
      if (!relay.metricsRequireToken) {
        expect(anonymous(relay, 'GET', relayJob.metrics_path), name).toBe('metrics');
        continue;
      }
      // Turned on: the job sends the token from a file mounted into the prometheus service.
      expect(relayJob.authorization?.type ?? 'Bearer', name).toBe('Bearer');
      const file = relayJob.authorization?.credentials_file;
      expect(file, `${name}: METRICS_REQUIRE_TOKEN=1 needs authorization.credentials_file in the inbox-relay job`).toBeDefined();
      expect(mountsOf(services.prometheus.volumes as string[]).has(file), name).toBe(true);
    }
    expect(relayConfig.metricsRequireToken, 'off by default in the compose stack').toBe(false);
  });

  it('provisions Grafana with the Prometheus datasource and the dashboard', () => {
    const grafana = services.grafana;
    const mounts = mountsOf(grafana.volumes as string[]);
    expect(mounts.get('/etc/grafana/provisioning')).toBe('./ops/grafana/provisioning');
    const provider = yamlFile<Obj>('ops/grafana/provisioning/dashboards/inbox-relay.yml').providers[0];
    expect(mounts.get(provider.options.path)).toBe('./ops/grafana/dashboards');
    const datasource = yamlFile<Obj>('ops/grafana/provisioning/datasources/prometheus.yml').datasources[0];
    expect(datasource).toMatchObject({ type: 'prometheus', url: 'http://prometheus:9090' });
    const dashboard = json<Obj>('ops/grafana/dashboards/inbox-relay.json');
    // Every panel reads the dashboard's datasource variable, whose default is the provisioned one,
    // so an imported dashboard can be pointed at another Prometheus.
    const uids = new Set((dashboard.panels as Obj[]).filter((panel) => panel.datasource).map((panel) => panel.datasource.uid));
    expect([...uids]).toEqual(['${datasource}']);
    const variable = (dashboard.templating.list as Obj[]).find((entry) => entry.name === 'datasource');
    expect(variable).toMatchObject({ type: 'datasource', query: 'prometheus', current: { value: datasource.uid } });
    const targets = (dashboard.panels as Obj[]).flatMap((panel) => (panel.targets ?? []) as Obj[]);
    for (const target of targets) expect(target.datasource?.uid ?? '${datasource}').toBe('${datasource}');
    const exprs = targets.map((target) => target.expr as string).join('\n');
    for (const queue of ['queue="inbox.dead"', 'queue="inbox.unrouted"', 'rabbitmq_queue_messages{']) expect(exprs).toContain(queue);
  });
});

describe('ops/Dockerfile', () => {
  const dockerfile = text('ops/Dockerfile');
  const instructions = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));

  it('is multi-stage: npm ci and npm run build in a build stage, a runtime stage without dev dependencies', () => {
    const from = instructions.filter((line) => line.startsWith('FROM '));
    expect(from.length).toBeGreaterThanOrEqual(2);
    expect(from[0]).toMatch(/^FROM node:\S+ AS build$/);
    expect(instructions).toContainEqual(expect.stringMatching(/^RUN npm ci\b/));
    expect(instructions).toContainEqual(expect.stringMatching(/^RUN npm run build\b.*npm prune --omit=dev/));
    expect(instructions).toContainEqual(expect.stringMatching(/^COPY --from=build \/app\/dist\/src /));
  });

  it('runs on Node 22 LTS, one exact release in every stage, while package.json still supports Node 20', () => {
    const images = instructions.filter((line) => line.startsWith('FROM ')).map((line) => line.split(/\s+/)[1]);
    // Node 20 reached its end of life in April 2026; an exact tag rebuilds the same runtime.
    for (const image of images) expect(image).toMatch(/^node:22\.\d+\.\d+-bookworm-slim$/);
    expect(new Set(images).size).toBe(1);
    expect(json<Obj>('package.json').engines.node).toBe('>=20.0.0');
  });

  it('runs node dist/src/main.js as a non-root user, with the CLI on the PATH', () => {
    const users = instructions.filter((line) => line.startsWith('USER '));
    expect(users.at(-1)).toBe('USER node');
    expect(instructions.at(-1)).toBe('CMD ["node", "dist/src/main.js"]');
    const pkg = json<Obj>('package.json');
    expect(dockerfile).toContain(`/app/${pkg.bin['inbox-relay']}`);
    expect(exists('ops/Dockerfile.dockerignore')).toBe(true);
    expect(text('ops/Dockerfile.dockerignore')).toMatch(/node_modules/);
  });
});

describe('ops/rabbitmq/definitions.json', () => {
  it('declares exactly the shared topology of src/amqp/topology.ts, with the same arguments', async () => {
    const declared = await declaredTopology();
    const definitions = json<Obj>('ops/rabbitmq/definitions.json');
    expect(
      byName(
        (definitions.exchanges as Obj[]).map(({ name, type, durable, arguments: args, auto_delete, internal, vhost }) => {
          expect({ auto_delete, internal, vhost }).toEqual({ auto_delete: false, internal: false, vhost: '/' });
          return { name, type, durable, arguments: args };
        }),
      ),
    ).toEqual(byName(declared.exchanges));
    expect(
      byName(
        (definitions.queues as Obj[]).map(({ name, durable, arguments: args, auto_delete, vhost }) => {
          expect({ auto_delete, vhost }).toEqual({ auto_delete: false, vhost: '/' });
          return { name, durable, arguments: args };
        }),
      ),
    ).toEqual(byName(declared.queues));
    const bindings = (definitions.bindings as Obj[]).map(({ source, destination, routing_key, destination_type }) => {
      expect(destination_type).toBe('queue');
      return { source, destination, routing_key };
    });
    expect(bindings).toEqual(expect.arrayContaining(declared.bindings));
    expect(bindings).toHaveLength(declared.bindings.length);
  });
});

describe('Kubernetes manifests', () => {
  const docs = filesIn('ops/k8s', '.yaml').flatMap((file) => yamlDocuments<Obj>(file).map((doc): Obj => ({ ...doc, file })));
  const find = (kind: string, name = 'inbox-relay'): Obj => {
    const found = docs.find((doc) => doc.kind === kind && doc.metadata?.name === name);
    if (!found) throw new Error(`no ${kind} ${name} in ops/k8s`);
    return found;
  };
  const deployment = find('Deployment');
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0];
  const portNumber = (port: string | number) =>
    typeof port === 'number' ? port : container.ports.find((p: Obj) => p.name === port)?.containerPort;
  const example = {
    ...find('ConfigMap').data,
    ...find('Secret').stringData,
  } as Record<string, string>;
  // The example Secret holds placeholders, which the relay refuses; a real Secret holds random values.
  const env = { ...example, JWT_SECRET: SECRET, ADMIN_TOKEN };
  const config = loadConfig(env);
  const labels = deployment.spec.template.metadata.labels as Obj;

  it('lists every applied manifest in kustomization.yaml', () => {
    const kustomization = yamlFile<Obj>('ops/k8s/kustomization.yaml');
    for (const resource of kustomization.resources as string[]) expect(exists(`ops/k8s/${resource}`), resource).toBe(true);
    for (const kind of ['Deployment', 'Service', 'PodDisruptionBudget', 'HorizontalPodAutoscaler', 'ConfigMap', 'NetworkPolicy']) {
      const doc = find(kind);
      expect(kustomization.resources, kind).toContain(doc.file.replace('ops/k8s/', ''));
    }
  });

  it('ships placeholder secrets that the relay refuses to start with, naming the variable', () => {
    for (const variable of ['JWT_SECRET', 'ADMIN_TOKEN']) {
      expect(example[variable], variable).toBeDefined();
      expect(() => loadConfig({ ...env, [variable]: example[variable] }), variable).toThrow(new RegExp(`^${variable}: `));
    }
  });

  it('configures the relay with variables it reads and values it accepts', () => {
    expectKnownVariables(env, 'ConfigMap + Secret');
    expect(container.envFrom).toEqual([{ configMapRef: { name: 'inbox-relay' } }, { secretRef: { name: 'inbox-relay' } }]);
    expect(portNumber('ws')).toBe(config.port);
    expect(portNumber('admin')).toBe(config.adminPort);
  });

  it('runs three nodes or more, each named by its pod (NODE_ID from the downward API)', () => {
    expect(deployment.spec.replicas).toBeGreaterThanOrEqual(3);
    expect(find('HorizontalPodAutoscaler').spec.minReplicas).toBeGreaterThanOrEqual(3);
    const variables = (container.env ?? []) as Obj[];
    expectKnownVariables(Object.fromEntries(variables.map((variable) => [variable.name, ''])), 'Deployment env');
    expect(variables.find((variable) => variable.name === 'NODE_ID')).toEqual({
      name: 'NODE_ID',
      valueFrom: { fieldRef: { fieldPath: 'metadata.name' } },
    });
    expect(Object.keys(env)).not.toContain('NODE_ID');
    // A Deployment's pod name: up to 63 characters of [a-z0-9-].
    const podName = `${'r'.repeat(47)}-7d9f8b6c5d-x2x9z`;
    expect(loadConfig({ ...env, NODE_ID: podName }).nodeId).toBe(podName);
  });

  it('gives the pod longer to stop than preStop plus DRAIN_TIMEOUT_MS', () => {
    const preStop = container.lifecycle.preStop;
    const sleepSeconds = preStop.sleep?.seconds ?? Number(preStop.exec.command.at(-1));
    expect(sleepSeconds).toBeGreaterThan(0);
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(sleepSeconds * 1000 + config.drainTimeoutMs);
  });

  it('probes readiness on /readyz and liveness on /healthz, on the admin port', () => {
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    expect(portNumber(container.readinessProbe.httpGet.port)).toBe(9090);
    expect(portNumber(container.livenessProbe.httpGet.port)).toBe(9090);
  });

  it('listens for the probes (from the node) and Prometheus on every pod address, and answers them without a token', () => {
    // Set explicitly: the relay's default, 127.0.0.1, is unreachable from the node and from Prometheus.
    expect(example.ADMIN_HOST).toBe('0.0.0.0');
    expect(isLoopback(config.adminHost)).toBe(false);
    expect(anonymous(config, 'GET', container.readinessProbe.httpGet.path)).toBe('readyz');
    expect(anonymous(config, 'GET', container.livenessProbe.httpGet.path)).toBe('healthz');
    expect(container.readinessProbe.httpGet.httpHeaders).toBeUndefined();
    expect(anonymous(config, 'POST', '/drain')).toBe('unauthorized');
    const annotations = deployment.spec.template.metadata.annotations as Obj;
    expect(Number(annotations['prometheus.io/port'])).toBe(config.adminPort);
    expect(config.metricsRequireToken, 'off by default: annotation-based scraping sends no token').toBe(false);
    expect(anonymous(config, 'GET', annotations['prometheus.io/path'])).toBe('metrics');
  });

  describe('NetworkPolicy', () => {
    const policy = find('NetworkPolicy');
    const rules = (policy.spec.ingress ?? []) as Obj[];
    const portsOf = (rule: Obj): number[] => ((rule.ports ?? []) as Obj[]).map((port) => portNumber(port.port));
    const adminRules = rules.filter((rule) => portsOf(rule).includes(config.adminPort));
    const clientRules = rules.filter((rule) => portsOf(rule).includes(config.port));

    it('selects the relay pods, isolates them for ingress and is applied by kustomization.yaml', () => {
      expect(policy.spec.podSelector.matchLabels).toEqual(labels);
      expect(policy.spec.policyTypes).toContain('Ingress');
      expect(yamlFile<Obj>('ops/k8s/kustomization.yaml').resources).toContain(policy.file.replace('ops/k8s/', ''));
    });

    it('names only ports the container has, in every rule (a rule without ports would open them all)', () => {
      for (const rule of rules) {
        expect(portsOf(rule).length, JSON.stringify(rule)).toBeGreaterThan(0);
        for (const port of portsOf(rule)) expect([config.port, config.adminPort], JSON.stringify(rule)).toContain(port);
      }
    });

    it('opens the client port to any source', () => {
      expect(clientRules.some((rule) => rule.from === undefined || (rule.from as Obj[]).length === 0)).toBe(true);
    });

    it('opens the admin port only to Prometheus in the monitoring namespace', () => {
      expect(adminRules.length).toBeGreaterThan(0);
      for (const rule of adminRules) {
        expect(portsOf(rule), 'the admin port shares no rule with the client port').toEqual([config.adminPort]);
        const peers = (rule.from ?? []) as Obj[];
        expect(peers.length, 'an admin rule without from would open it to everyone').toBeGreaterThan(0);
        for (const peer of peers) {
          expect(peer.ipBlock, 'no address ranges on the admin port').toBeUndefined();
          expect(peer.namespaceSelector?.matchLabels, JSON.stringify(peer)).toEqual({ 'kubernetes.io/metadata.name': 'monitoring' });
          expect(peer.podSelector?.matchLabels, JSON.stringify(peer)).toEqual({ 'app.kubernetes.io/name': 'prometheus' });
        }
      }
    });

    it('explains why the kubelet probes need no rule', () => {
      const comments = text(policy.file)
        .split('\n')
        .filter((line) => line.startsWith('#'))
        .join(' ');
      expect(comments).toMatch(/kubelet/);
      expect(comments).toMatch(/always allows traffic from the node/);
    });
  });

  it('runs as non-root with a read-only root filesystem', () => {
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true });
  });

  it('has a PodDisruptionBudget and a Service that select the deployment pods', () => {
    const labels = deployment.spec.template.metadata.labels;
    expect(deployment.spec.selector.matchLabels).toEqual(labels);
    expect(find('PodDisruptionBudget').spec.selector.matchLabels).toEqual(labels);
    expect(find('PodDisruptionBudget').spec.maxUnavailable).toBe(1);
    const service = find('Service');
    expect(service.spec.selector).toEqual(labels);
    for (const port of service.spec.ports) expect(portNumber(port.targetPort), port.name).toBeDefined();
  });

  it('asks for no session affinity: any pod serves any user', () => {
    const service = find('Service');
    expect(service.spec.sessionAffinity ?? 'None').toBe('None');
    expect(service.spec.sessionAffinityConfig).toBeUndefined();
    for (const doc of docs) expect(JSON.stringify(doc), doc.file).not.toMatch(/affinity-mode|session-cookie|sticky|upstream-hash-by/i);
  });

  it('autoscales the deployment on the connections gauge the relay exposes', async () => {
    const hpa = find('HorizontalPodAutoscaler');
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name });
    const metric = hpa.spec.metrics[0];
    expect(metric.type).toBe('Pods');
    const exposed = await exposedMetricNames();
    expect(exposed.has(metric.pods.metric.name)).toBe(true);
    const adapter = yamlFile<Obj>('ops/k8s/prometheus-adapter-rules.yaml');
    const rules = (parseYaml(adapter.data['config.yaml']) as Obj).rules as Obj[];
    expect(rules.map((rule) => rule.name.as)).toContain(metric.pods.metric.name);
    expect(rules[0]!.seriesQuery).toContain(metric.pods.metric.name);
  });

  it('renders with kustomize when kubectl is installed', () => {
    let rendered: string;
    try {
      rendered = execFileSync('kubectl', ['kustomize', 'ops/k8s'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (error) {
      if ((error as { code?: string }).code === 'ENOENT') return;
      throw error;
    }
    expect(rendered).toContain('kind: Deployment');
    expect(rendered).toContain('kind: HorizontalPodAutoscaler');
    expect(rendered).toContain('kind: NetworkPolicy');
  });
});
