/**
 * Preloaded into the relay child by the bench (`node --import dist/bench/relay-probe.js`), never
 * into production. Over the child's IPC channel it answers:
 * - `memory`: process.memoryUsage() (after a full GC when the child runs with --expose-gc);
 * - `profile-start` / `profile-stop`: the V8 CPU profiler (the one behind --cpu-prof), so that a
 *   profile covers exactly a measuring window; the stop writes a .cpuprofile file;
 * - `heap-snapshot`: writes a heap snapshot file.
 * It does not keep the process alive.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { writeHeapSnapshot } from 'node:v8';

interface ProbeRequest {
  probe: 'memory' | 'profile-start' | 'profile-stop' | 'heap-snapshot';
  id: number;
  gc?: boolean;
  file?: string;
}

let session: Session | undefined;

function post(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
  return new Promise((resolve, reject) => {
    session?.post(method, params, (error, result) => (error ? reject(error) : resolve(result)));
  });
}

async function answer(message: ProbeRequest): Promise<Record<string, unknown>> {
  switch (message.probe) {
    case 'memory': {
      const collect = (globalThis as { gc?: () => void }).gc;
      if (message.gc && collect) {
        collect();
        collect();
      }
      const usage = process.memoryUsage();
      return {
        rss: usage.rss,
        heapUsed: usage.heapUsed,
        heapTotal: usage.heapTotal,
        external: usage.external,
        arrayBuffers: usage.arrayBuffers,
        gcRan: Boolean(message.gc && collect),
      };
    }
    case 'profile-start':
      session ??= new Session();
      session.connect();
      await post('Profiler.enable');
      await post('Profiler.setSamplingInterval', { interval: 500 });
      await post('Profiler.start');
      return { ok: true };
    case 'profile-stop': {
      const { profile } = (await post('Profiler.stop')) as { profile: unknown };
      if (message.file) writeFileSync(message.file, JSON.stringify(profile));
      session?.disconnect();
      session = undefined;
      return { ok: true, file: message.file };
    }
    case 'heap-snapshot':
      return { ok: true, file: writeHeapSnapshot(message.file) };
  }
}

if (typeof process.send === 'function') {
  process.on('message', (message: ProbeRequest) => {
    if (typeof message?.probe !== 'string') return;
    answer(message).then(
      (result) => process.send?.({ ...result, probe: message.probe, id: message.id }),
      (error: unknown) => process.send?.({ probe: message.probe, id: message.id, error: String(error) }),
    );
  });
  process.channel?.unref();
}
