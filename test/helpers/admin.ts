/** Reads a relay's admin endpoints. */
export async function readyz(adminPort: number): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
  return response.status;
}
