/** The API's base URLs, per the reference. */
export const ENVIRONMENTS = {
  production: 'https://api.plutos-ai.com/v1',
  staging: 'https://staging-api.plutos-ai.com/v1',
  development: 'http://localhost:3000/v1',
} as const;

export type Environment = keyof typeof ENVIRONMENTS;
