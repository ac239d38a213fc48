export { busReadiness, createBus, type Bus, type BusHandler } from './bus.ts';
export { MemoryBus } from './memory.ts';
export { RedisBus, type RedisBusOptions } from './redis.ts';
export { RecentIds } from './recent.ts';
export { RedisBuckets, type BucketReply, type RedisBucketsOptions, type SharedBuckets } from './buckets.ts';
export * from './channels.ts';
export { RedisScripts, script, type RedisScriptsOptions, type Script } from './scripts.ts';
export {
  DAY,
  HOUR,
  LocalVolumes,
  RANK_KEEP,
  RedisVolumes,
  type Ranked,
  type Volume,
  type VolumeCounters,
  type VolumeWindow,
} from './volume.ts';
