/**
 * Shard actor thread entry. piscina starts the thread and runs one "lease" task per attachment; batches
 * arrive on the lease's data port and are applied one message at a time (the port is the mailbox). All
 * memory logic lives in workers/shard-core.ts.
 */
import type { MessagePort } from 'node:worker_threads';
import { decode } from '../common/codec.js';
import { exposeControl } from '../common/control.js';
import { ErrorCode, TallyworksError, protocolError, toWireError } from '../common/errors.js';
import type { AttachInfo, BatchEnvelope, DataMessage, DataReply, ShardControl, ShardLeaseEnd, ShardTask } from '../common/messages.js';
import { ShardCore } from './shard-core.js';

function serve(info: AttachInfo): Promise<ShardLeaseEnd> {
  const core = new ShardCore(info.shard, info.header, info.arena, info.timeCell, info.calendars, info.dirty);
  const control: ShardControl = { stats: () => core.stats() };
  exposeControl(control, info.control);
  const data: MessagePort = info.data;
  return new Promise((resolve) => {
    data.on('message', (message: DataMessage) => {
      switch (message.type) {
        case 'apply': {
          const batch = decode<BatchEnvelope>(message.envelope);
          let reply: DataReply;
          try {
            const result = core.apply(batch);
            reply = result === 'gap' ? { type: 'gap', seq: batch.seq, applied: core.appliedSeq } : { type: result, seq: batch.seq };
          } catch (err) {
            // A memory limit is not cured by a restart: report it. Anything else kills the thread, and the
            // router replays (a poison batch is given up after maxRestarts).
            if (!(err instanceof TallyworksError) || err.code !== ErrorCode.CAPACITY) throw err;
            reply = { type: 'failed', seq: batch.seq, error: toWireError(err) };
          }
          data.postMessage(reply);
          break;
        }
        case 'detach':
          data.close();
          info.control.close();
          resolve({ type: 'detached', applied: core.appliedSeq });
          break;
        default:
          throw protocolError(`shard ${info.shard} data port`, message satisfies never);
      }
    });
  });
}

export default function shardTask(task: ShardTask): Promise<ShardLeaseEnd> {
  if (task.type !== 'attach') throw protocolError('shard', task);
  return serve(task.attach);
}
