export * from './pricing.ts';
export * from './gate.ts';
