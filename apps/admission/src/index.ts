export { startAdmission, type Admission, type AdmissionDeps } from './app.ts';
