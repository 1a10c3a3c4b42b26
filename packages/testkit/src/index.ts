export * from './eventually';
export * from './ports';
export * from './redis';
export * from './node';
export * from './http';
export * from './contract/sessionStore';
export * from './device';
export * from './cluster';
