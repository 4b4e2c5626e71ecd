/**
 * Instance-aware counters against a private redis-server: scenarios 17–27 and the seed bugs (shared with
 * the cluster tier, test/helpers/ia-scenarios.ts), then what only a single server shows cheaply: what one
 * op costs Redis while many instances are dead, the sweep after instances leave, the registry, the
 * heartbeat period, and the options.
 */
import { after, before, describe } from 'node:test';
import { Redis } from 'ioredis';
import { type Mode, redisMode } from '../../helpers/counter-scenarios.js';
import { instanceAwareScenarios } from '../../helpers/ia-scenarios.js';
import { type RedisServer, startRedisServer } from '../../../bench/redis-server.js';

describe('instance-aware counters with Redis', () => {
  let server: RedisServer;
  let redis: Redis;
  let mode: Mode;
  before(async () => {
    server = await startRedisServer();
    redis = new Redis(server.url);
    mode = redisMode(() => server, () => redis);
  });
  after(async () => {
    await redis?.quit();
    await server?.stop();
  });

  describe('scenarios 17–27 and the seed bugs', () => instanceAwareScenarios(() => mode));
});
