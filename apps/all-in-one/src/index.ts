export { startAll, type Stack } from './stack.ts';
