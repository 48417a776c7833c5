import { BENCH_KEY } from './corral-client.js';

/** A sandbox's gateway exec of `true`, set up once (`POST /auth`) and run as often as a scenario times it. */
export interface GatewayTrueExec {
  /** The gateway's exec URL of the sandbox. */
  url: string;
  /** The gateway token `POST /auth` gave. */
  token: string;
  /** One exec of `true` over a kept-alive `fetch`; throws unless it answers 200 with exit code 0. */
  run(): Promise<void>;
}

/** Asks the server at `serverUrl` for sandbox `id`'s gateway token and returns its `true` exec. */
export async function gatewayTrueExec(serverUrl: string, id: string): Promise<GatewayTrueExec> {
  const authResponse = await fetch(`${serverUrl}/api/v1/sandbox/${id}/auth`, { method: 'POST', headers: { authorization: `Bearer ${BENCH_KEY}` } });
  if (authResponse.status !== 200) throw new Error(`auth of ${id}: HTTP ${authResponse.status} ${await authResponse.text()}`);
  const auth = (await authResponse.json()) as { token: string; gateway_url: string; user_ns: string; job_id: string };
  const url = `${auth.gateway_url}/${auth.user_ns}/${auth.job_id}/exec`;
  const body = JSON.stringify({ command: 'true', sandbox_id: id, timeout: 60 });
  const headers = { authorization: `Bearer ${auth.token}`, 'content-type': 'application/json' };
  return {
    url,
    token: auth.token,
    async run() {
      const response = await fetch(url, { method: 'POST', headers, body });
      const result = (await response.json()) as { exit_code?: number };
      if (response.status !== 200 || result.exit_code !== 0) throw new Error(`exec: HTTP ${response.status} ${JSON.stringify(result)}`);
    },
  };
}
