/** The record codecs (one module per type) and the checks of what their origin may claim. */
export * from './codec.js';
export * from './node.js';
export * from './endpoint.js';
export * from './identity.js';
export * from './manifest.js';
export * from './relay.js';
export * from './gateway.js';
export * from './heartbeat.js';
export * from './cluster.js';
export * from './underlay.js';
export * from './relaypin.js';
export * from './status.js';
export * from './location.js';
export * from './rejections.js';
export * from './trust.js';
