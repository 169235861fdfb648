import { RedisStore } from '../../src/store/redis-store.js';
import { storeContract } from '../helpers/store-contract.js';
import { redisUrl, uid } from '../helpers/relay.js';

storeContract('redis', async (limits) => {
  const store = new RedisStore({ url: redisUrl(), keyPrefix: `${uid('test')}:`, limits });
  await store.connect();
  return store;
});
