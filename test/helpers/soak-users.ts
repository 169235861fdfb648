/** Soak clients for a set of new users, plus one extra raw connection of the first user that watches `status` frames. */
import { RawClient } from './raw-client.js';
import { token, uid } from './relay.js';
import { SoakClient } from './soak-client.js';

export async function soakUsersWithWatcher(
  url: string,
  prefix: string,
  count: number,
): Promise<{ users: string[]; clients: SoakClient[]; watcher: RawClient }> {
  const users = Array.from({ length: count }, (_, i) => uid(`${prefix}${i}`));
  const clients = users.map((user) => new SoakClient({ url, token: () => token(user), ackEvery: 2 }));
  for (const client of clients) client.start();
  const watcher = await RawClient.connect(url);
  watcher.send({ type: 'hello', token: token(users[0]!), window: 1 });
  await watcher.next('welcome');
  return { users, clients, watcher };
}
