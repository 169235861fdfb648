/* global document, location, URLSearchParams */
// A small React page on the useInbox hook: it shows the connection state, the last messages, and
// why the client gave up, if it did. Bundle it (esbuild examples/react/main.js --bundle) and open
// the page with ?token=<a token>&url=ws://127.0.0.1:8080 from an origin in ALLOWED_ORIGINS; the
// browser test (test/browser/examples.test.ts) does exactly that.
import * as React from 'react';
import { createRoot } from 'react-dom/client';
import * as InboxRelayClient from '@inbox-relay/client';
import { createUseInbox } from './use-inbox.js';

const useInbox = createUseInbox(React, InboxRelayClient);
const h = React.createElement;

function Inbox({ url, token }) {
  const { messages, state, error } = useInbox({ url, token });
  return h(
    'main',
    null,
    h('p', null, 'state: ', h('span', { id: 'state' }, state)),
    error ? h('p', { id: 'error' }, `${error.code}: ${error.message}`) : null,
    h(
      'ol',
      { id: 'messages' },
      messages.map((message) => h('li', { key: `${message.epoch}:${message.seq}` }, `${message.seq} ${JSON.stringify(message.data)}`)),
    ),
  );
}

const params = new URLSearchParams(location.search);
createRoot(document.getElementById('root')).render(
  h(Inbox, { url: params.get('url') || 'ws://127.0.0.1:8080', token: params.get('token') }),
);
