export { startAdmission, type Admission, type AdmissionDeps } from './app.ts';
export { startAll, type Stack } from './stack.ts';
