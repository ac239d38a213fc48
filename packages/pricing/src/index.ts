export * from './pricing.ts';
export * from './gate.ts';
export * from './surge.ts';
export * from './sender.ts';
