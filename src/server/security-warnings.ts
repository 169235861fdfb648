/**
 * Settings that leave a node open wider than it likely should be, told once at start-up as
 * warnings (the relay runs: each is a valid choice in some deployment). Each warning names the
 * settings it is about; none carries a secret.
 */
import type { RelayConfig } from '../config.js';

export interface SecurityWarning {
  /** The environment variables the warning is about. */
  settings: string[];
  message: string;
}

/** Whether a listener address only accepts connections from this host. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
}

export function securityWarnings(config: RelayConfig): SecurityWarning[] {
  const warnings: SecurityWarning[] = [];
  const unset = [
    ...(config.jwt.audience === undefined ? ['JWT_AUDIENCE'] : []),
    ...(config.jwt.issuer === undefined ? ['JWT_ISSUER'] : []),
  ];
  if (unset.length > 0) {
    const consequences = [
      ...(config.jwt.audience === undefined ? ['tokens that carry an aud claim are refused'] : []),
      ...(config.jwt.issuer === undefined ? ['a token from any issuer that holds the key is accepted'] : []),
    ];
    warnings.push({
      settings: unset,
      message: `${unset.join(' and ')} ${unset.length > 1 ? 'are' : 'is'} not set: ${consequences.join('; ')}`,
    });
  }
  if (config.jwt.maxAgeS === 0) {
    warnings.push({ settings: ['JWT_MAX_AGE'], message: 'JWT_MAX_AGE is 0: token lifetimes are not limited' });
  }
  if (config.adminToken === undefined && !isLoopback(config.adminHost)) {
    warnings.push({
      settings: ['ADMIN_TOKEN', 'ADMIN_HOST'],
      message: `ADMIN_TOKEN is not set and the admin port listens on ${config.adminHost}: anyone who reaches it can drain this node`,
    });
  }
  if (config.publishApi && !isLoopback(config.publishApi.host)) {
    warnings.push({
      settings: ['PUBLISH_HOST'],
      message: `the publish API listens on ${config.publishApi.host} over plain HTTP: PUBLISH_TOKEN crosses the network in the clear unless a TLS proxy or a private network is in front`,
    });
  }
  if (config.replayKeys.length === 0) {
    warnings.push({
      settings: ['REPLAY_KEY'],
      message:
        'REPLAY_KEY is not set: replays of dead letters (inbox-relay dlq replay) are deduplicated like any copy, so a message a client dead-lettered is not delivered again',
    });
  }
  return warnings;
}
