export * from './eventually';
export * from './ports';
export * from './redis';
export * from './contract/sessionStore';
