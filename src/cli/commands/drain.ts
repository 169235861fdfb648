/**
 * `drain [--admin-url URL] [--wait]`: POST /drain on a relay's admin port, with
 * `Authorization: Bearer $ADMIN_TOKEN` when ADMIN_TOKEN is set. The node fails readiness, closes
 * its clients with 1012 (they resume elsewhere), returns in-flight messages to RabbitMQ in order
 * and exits. With --wait, returns once the admin port stopped answering.
 */
import type { Env } from '../../config.js';
import { failure, usageError } from '../cli-error.js';
import { flag, intOption, stringOption, type Invocation } from '../commands.js';
import { describeError, type Output } from '../io.js';
import { loadOperatorConfig } from '../operator-config.js';

const POLL_MS = 200;

/** Where this host reaches the admin listener bound to `adminHost`: itself, unless it listens on every address. */
function localAdminHost(adminHost: string): string {
  if (adminHost === '0.0.0.0' || adminHost === '') return '127.0.0.1';
  if (adminHost === '::') return '[::1]';
  return adminHost.includes(':') ? `[${adminHost}]` : adminHost;
}

function adminUrlOf(invocation: Invocation, adminHost: string, adminPort: number): string {
  const raw = stringOption(invocation, 'admin-url') ?? `http://${localAdminHost(adminHost)}:${adminPort}`;
  try {
    const url = new URL(raw);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http');
    return url.toString().replace(/\/$/, '');
  } catch {
    throw usageError('drain: --admin-url must be an http:// or https:// URL');
  }
}

async function answers(url: string): Promise<boolean> {
  try {
    await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1_000) });
    return true;
  } catch {
    return false;
  }
}

export async function drain(invocation: Invocation, env: Env, output: Output): Promise<number> {
  const config = loadOperatorConfig(env);
  const adminUrl = adminUrlOf(invocation, config.adminHost, config.adminPort);
  const timeoutMs = intOption(invocation, 'timeout-ms', config.drainTimeoutMs + 5_000, 1, 24 * 3600 * 1000);
  let status: number;
  try {
    const response = await fetch(`${adminUrl}/drain`, {
      method: 'POST',
      headers: config.adminToken === undefined ? {} : { Authorization: `Bearer ${config.adminToken}` },
      signal: AbortSignal.timeout(5_000),
    });
    status = response.status;
    await response.body?.cancel();
  } catch (error) {
    throw failure(`cannot reach the relay admin port at ${adminUrl}: ${describeError(error)}`, error);
  }
  if (status === 401) {
    throw failure(
      config.adminToken === undefined
        ? `the relay at ${adminUrl} requires an admin token: set ADMIN_TOKEN to the relay's (HTTP 401)`
        : `the relay at ${adminUrl} refused ADMIN_TOKEN: it is not the relay's admin token (HTTP 401)`,
    );
  }
  if (status !== 202) throw failure(`the relay at ${adminUrl} answered HTTP ${status} to POST /drain (expected 202)`);
  let drained: boolean | null = null;
  if (flag(invocation, 'wait')) {
    const deadline = Date.now() + timeoutMs;
    drained = false;
    while (Date.now() < deadline) {
      if (!(await answers(adminUrl))) {
        drained = true;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
  output.result({ adminUrl, accepted: true, drained }, () => [
    `drain accepted by ${adminUrl}`,
    ...(drained === true ? ['the node finished draining and stopped'] : []),
    ...(drained === false ? [`the node still answered after ${timeoutMs} ms`] : []),
  ]);
  return drained === false ? 1 : 0;
}
