// fhirclient falls back to isomorphic-webcrypto (and its shim for browsers of the last decade)
// when there is no globalThis.crypto; every browser the app supports has it.
export default globalThis.crypto;
