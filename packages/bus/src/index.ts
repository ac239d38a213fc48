export { createBus, type Bus, type BusHandler } from './bus.ts';
export { MemoryBus } from './memory.ts';
export { RedisBus } from './redis.ts';
export * from './channels.ts';
