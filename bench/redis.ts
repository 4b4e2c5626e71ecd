/**
 * Redis for the benchmarks: the URL given with `--redis`, or a private redis-server on a free loopback
 * port (started here and stopped at the end), so a benchmark never touches a Redis someone else uses.
 */
import { Redis } from 'ioredis';
import { startRedisServer } from './redis-server.js';

export interface BenchRedis {
  readonly url: string;
  /** Calls of each command since the server started (INFO commandstats). */
  commandCalls(): Promise<Map<string, number>>;
  /** CPU seconds the server process has used (INFO cpu: used_cpu_user + used_cpu_sys), all its threads. */
  serverCpuSeconds(): Promise<number>;
  readonly client: Redis;
  close(): Promise<void>;
}

export async function benchRedis(url: string | undefined): Promise<BenchRedis> {
  const server = url === undefined ? await startRedisServer() : undefined;
  const target = url ?? server!.url;
  const client = new Redis(target);
  const commandCalls = async (): Promise<Map<string, number>> => {
    const info = await client.info('commandstats');
    const calls = new Map<string, number>();
    for (const m of info.matchAll(/cmdstat_([^:]+):calls=(\d+)/g)) calls.set(m[1]!, Number(m[2]));
    return calls;
  };
  const serverCpuSeconds = async (): Promise<number> => {
    const info = await client.info('cpu');
    const field = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
    return field('used_cpu_user') + field('used_cpu_sys');
  };
  return {
    url: target,
    client,
    commandCalls,
    serverCpuSeconds,
    async close() {
      await client.quit();
      await server?.stop();
    },
  };
}
