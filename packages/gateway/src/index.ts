/** The gateway node as a library: what tests, tools and embedders use. `main.ts` is the executable. */
export { loadConfig, ConfigError, type Config, type RedisConfig } from './config';
export { createNode, storeLimits, SERVICE_VERSION, type GatewayNode, type NodeOptions } from './node';
export { MemoryPresence } from './presence/memory';
export type { PresenceRegistry, DeviceDescriptor } from './presence/types';
export { MemoryNodeRegistry, type NodeRegistry, type NodeInfo, type LocalConnection, type ConnectionDelta } from './cluster/nodeRegistry';
export { MemoryStore, type StoreLimits } from './store/memory';
export { RedisStore } from './store/redis';
export { KeySpace } from './store/keys';
export { createRedis, whenReady, type RedisLike } from './store/redisClient';
export { MemoryBroker, MemoryBus } from './bus/memory';
export type { Bus } from './bus/types';
export type * from './store/types';
export { TokenService, type Principal, type Role } from './auth/tokens';
export { uwsBuild, uwsIsNative, uwsLoadError } from './uwsRuntime';
export { createLogger, type Logger } from './log';
