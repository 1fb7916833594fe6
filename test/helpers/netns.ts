export * from '../../src/testbed/netns.js';
