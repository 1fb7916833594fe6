/** kvstoremesh heartbeats: state/heartbeat/v1/<cluster>/kvstoremesh = {at (ms since epoch), seq}. */
import { z } from 'zod';
import { jsonCodec } from './codec.js';
import { stateLocation } from './location.js';

export const heartbeatSchema = z.object({ at: z.number().int().nonnegative(), seq: z.number().int().nonnegative() });
export type Heartbeat = z.infer<typeof heartbeatSchema>;

export const heartbeatCodec = jsonCodec('heartbeat', heartbeatSchema, {
  maxBytes: 256,
  check: (key) => (stateLocation('heartbeat', key)?.name === 'kvstoremesh' ? undefined : 'key is not <cluster>/kvstoremesh'),
});
