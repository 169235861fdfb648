/** rabbitmqctl, for chaos tests: close named connections, set the memory watermark. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function rabbitmqctl(...args: string[]): Promise<string> {
  const { stdout } = await run('rabbitmqctl', args, { timeout: 90_000 });
  return stdout;
}

/** Closes every connection whose client-given name starts with `prefix`; returns how many. */
export async function closeConnections(prefix: string, reason = 'chaos test'): Promise<number> {
  const lines = (await rabbitmqctl('list_connections', 'pid', 'client_properties', '--no-table-headers', '-q')).split('\n');
  const pids: string[] = [];
  for (const line of lines) {
    const match = /^(<[^>]+>)\t.*\{"connection_name","([^"]*)"\}/.exec(line);
    if (match?.[1] && match[2]?.startsWith(prefix)) pids.push(match[1]);
  }
  await Promise.all(pids.map((pid) => rabbitmqctl('close_connection', pid, reason)));
  return pids.length;
}

export async function memoryWatermark(): Promise<string> {
  const out = await rabbitmqctl('eval', 'vm_memory_monitor:get_vm_memory_high_watermark().');
  return out.trim().split('\n').pop()!.trim();
}

/** Sets the memory watermark, trying three times (a restore must not be lost to a slow CLI). */
export async function setMemoryWatermark(value: string): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      await rabbitmqctl('set_vm_memory_high_watermark', value);
      return;
    } catch (error) {
      if (attempt >= 3) throw error;
    }
  }
}
