/** `serve`: the relay node of `npm start`. src/main.ts runs it on import and owns the process from then on. */
export async function serve(): Promise<'running'> {
  await import('../../main.js');
  return 'running';
}
