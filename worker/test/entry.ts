// The Worker as deployed, plus the Durable Object that stands in for the container in tests.
export { default, BackendContainer } from '../src/index.ts';
export { FakeBackend } from './fake-backend.ts';
