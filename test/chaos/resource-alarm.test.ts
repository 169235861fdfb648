/**
 * A RabbitMQ memory alarm (watermark set very low, then restored): publishing through the
 * producer fails fast with RELAY_ERR_BROKER_BLOCKED instead of hanging, clients are told
 * delivery of new messages is paused, consumers keep delivering what is queued, and after the
 * alarm clears everything resumes. The watermark is restored whatever happens.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../../src/amqp/producer.js';
import { isRelayError } from '../../src/errors.js';
import { waitUntil } from '../../src/wait-until.js';
import { RawClient } from '../helpers/raw-client.js';
import { memoryWatermark, setMemoryWatermark } from '../helpers/rabbitmqctl.js';
import { startTestRelay, testConfig, token, uid, type TestRelay } from '../helpers/relay.js';

describe('RabbitMQ resource alarm', () => {
  let relay: TestRelay;
  let producer: Producer;
  let original = '0.4';
  beforeAll(async () => {
    original = await memoryWatermark();
    relay = await startTestRelay(testConfig({ PUBLISH_TIMEOUT_MS: '3000' }));
    // The library itself, without the tests' retry wrapper: its own fail-fast is what is measured.
    producer = new Producer({ url: relay.config.rabbitmqUrl, publishTimeoutMs: 3_000 });
  });
  afterAll(async () => {
    await setMemoryWatermark(original);
    await producer.close();
    await relay.stop();
  });

  it('fails publishing fast, keeps delivering, and resumes when the alarm clears', async () => {
    const user = uid('alarm');
    let blocked = false;
    relay.relay.events.on('broker-blocked', (value) => {
      blocked = value;
    });
    for (let n = 1; n <= 10; n += 1) await producer.publish(user, { n });
    const watcher = await RawClient.connect(relay.url);
    watcher.send({ type: 'hello', token: token(uid('alarm-watch')) });
    await watcher.next('welcome');

    try {
      await setMemoryWatermark('0.0000001');
      await waitUntil(() => blocked, { timeoutMs: 30_000, intervalMs: 50, what: 'the relay to see the alarm' });
      expect(await watcher.next('status', 5_000)).toMatchObject({ state: 'degraded' });

      // RabbitMQ tells a publisher it is blocked when it publishes: the first publish after the
      // alarm can still be accepted; from then on the producer knows and fails at once.
      await producer.publish(user, { n: 11 }).catch(() => undefined);
      const started = Date.now();
      const failure = await producer.publish(user, { n: 12 }).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(isRelayError(failure, 'RELAY_ERR_BROKER_BLOCKED')).toBe(true);
      expect(Date.now() - started).toBeLessThan(1_000);

      // Consumers are not blocked: what was queued before the alarm is delivered during it.
      const client = await RawClient.connect(relay.url);
      client.send({ type: 'hello', token: token(user) });
      await client.next('welcome');
      const during = [];
      for (let i = 0; i < 10; i += 1) during.push(await client.next('msg'));
      expect(during.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      client.send({ type: 'ack', seq: 10 });

      await setMemoryWatermark(original);
      await waitUntil(() => !blocked, { timeoutMs: 30_000, intervalMs: 50, what: 'the alarm to clear' });
      expect(await watcher.next('status', 5_000)).toMatchObject({ state: 'ok' });
      await producer.publish(user, { n: 13 });
      let next = await client.next('msg');
      if ((next.data as { n: number }).n === 11) next = await client.next('msg');
      expect(next.data).toEqual({ n: 13 });
      client.close();
      watcher.close();
    } finally {
      await setMemoryWatermark(original);
    }
  });
});
