/* global document, location, URLSearchParams, fetch, setInterval, clearInterval */
// A small React page on the useInbox hook: it shows the connection state, the last messages (with
// the topic of those that came through one), where the user is connected right now (presence, from
// the app's backend: backend.js), and why the client gave up, if it did. Bundle it (esbuild
// examples/react/main.js --bundle), serve it beside backend.js and open the page with
// ?token=<a token>&url=ws://127.0.0.1:8080 from an origin in ALLOWED_ORIGINS; the browser test
// (test/browser/examples.test.ts) does exactly that.
import * as React from 'react';
import { createRoot } from 'react-dom/client';
import * as InboxRelayClient from '@inbox-relay/client';
import { createUseInbox } from './use-inbox.js';

const useInbox = createUseInbox(React, InboxRelayClient);
const h = React.createElement;

// The signed-in user's presence, asked of the app's backend every few seconds.
function usePresence(token, everyMs = 2000) {
  const [presence, setPresence] = React.useState(undefined);
  React.useEffect(() => {
    let stopped = false;
    const ask = () =>
      fetch('/api/presence', { headers: { Authorization: `Bearer ${token}` } })
        .then((response) => (response.ok ? response.json() : undefined))
        .then((answer) => !stopped && answer && setPresence(answer))
        .catch(() => undefined);
    ask();
    const timer = setInterval(ask, everyMs);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [token, everyMs]);
  return presence;
}

function describePresence(presence) {
  if (!presence) return 'unknown';
  if (!presence.online) return 'offline';
  const devices = presence.connections.map((connection) => connection.device ?? 'unnamed');
  return `online on ${devices.length} connection${devices.length === 1 ? '' : 's'}: ${devices.join(', ')}`;
}

function Inbox({ url, token }) {
  const { messages, state, error } = useInbox({ url, token, device: 'react example' });
  const presence = usePresence(token);
  return h(
    'main',
    null,
    h('p', null, 'state: ', h('span', { id: 'state' }, state)),
    h('p', null, 'you are ', h('span', { id: 'presence' }, describePresence(presence))),
    error ? h('p', { id: 'error' }, `${error.code}: ${error.message}`) : null,
    h(
      'ol',
      { id: 'messages' },
      messages.map((message) =>
        h(
          'li',
          { key: `${message.epoch}:${message.seq}` },
          `${message.seq} ${message.topic ? `[${message.topic}] ` : ''}${JSON.stringify(message.data)}`,
        ),
      ),
    ),
  );
}

const params = new URLSearchParams(location.search);
createRoot(document.getElementById('root')).render(
  h(Inbox, { url: params.get('url') || 'ws://127.0.0.1:8080', token: params.get('token') }),
);
