import type { KubeConfig } from '@kubernetes/client-node';

/** Why a request to the API server failed, and whether waiting can fix it. */
export interface ApiFailure {
  /** The kubeconfig's server URL. */
  readonly server: string;
  /** One line: the error, with a hint where the cause is known. */
  readonly cause: string;
  /**
   * False when no retry can fix it: a protocol mismatch (TLS against plain
   * HTTP or the reverse), a certificate that does not verify, credentials
   * refused (401) or RBAC denying the request (403).
   */
  readonly retryable: boolean;
}

export function serverOf(kc: KubeConfig): string {
  return kc.getCurrentCluster()?.server ?? '(no server)';
}

// Node's TLS verification errors (tls.TLSSocket authorizationError codes).
const CERT_CODES = /^(CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|ERR_TLS_CERT_ALTNAME_INVALID$|HOSTNAME_MISMATCH$)/;

/** Classifies an error of client-node's fetch-based watch or of requestJson (node:http). */
export function classifyApiFailure(err: unknown, server: string): ApiFailure {
  const fail = (cause: string, retryable: boolean): ApiFailure => ({ server, cause, retryable });
  if (!(err instanceof Error)) return fail(String(err), true);
  const fields = err as Error & { code?: unknown; statusCode?: unknown };
  const code = typeof fields.code === 'string' ? fields.code : '';
  const status = typeof fields.statusCode === 'number' ? fields.statusCode : 0;
  const message = err.message.split('\n')[0]!;
  if (status === 401) return fail(`HTTP 401 Unauthorized: the API server refused the credentials (${message})`, false);
  if (status === 403) return fail(`HTTP 403 Forbidden: RBAC denies the request (${message})`, false);
  if (status >= 400 && status < 500 && /body is not JSON/.test(message)) {
    return fail(`${message}: not a Kubernetes API answer; is the server https, spoken to as http?`, false);
  }
  if (status > 0) return fail(message.startsWith('HTTP ') || message.includes(`HTTP ${status}`) ? message : `HTTP ${status}: ${message}`, true);
  const ssl = /SSL routines:[^:]*:([^:]+)/.exec(message)?.[1];
  if (code === 'EPROTO' || code.startsWith('ERR_SSL_') || ssl) {
    const plain = ssl !== undefined && /wrong version number|packet length too long|http request/.test(ssl);
    return fail(`TLS handshake failed (${ssl ?? code})${plain ? ': the server speaks plain HTTP, not https' : ''}`, false);
  }
  if (CERT_CODES.test(code)) return fail(`TLS certificate not trusted (${code}): check the kubeconfig's certificate-authority`, false);
  if (code.startsWith('HPE_')) return fail(`not an HTTP answer (${code}): is the server https, spoken to as http?`, false);
  if (/HTTP protocol is not allowed/.test(message)) return fail(`${message}: use an https server`, false);
  return fail(code && !message.includes(code) ? `${code}: ${message}` : message, true);
}
