// useInbox: a React hook over @inbox-relay/client, written against the hooks it needs only
// (useEffect, useState), so this example adds no React dependency: pass React in.
//
//   const useInbox = createUseInbox(React, InboxRelayClient);
//   function Inbox({ token }) {
//     const { messages, state, error } = useInbox({ url: 'ws://127.0.0.1:8080', token });
//     ...
//   }
//
// The client is created when `url` or `token` change and closed on unmount; each message is
// acked once it is in the component's state. A permanent failure (a refused token) ends up in
// `error`, with `state` 'closed'.
export function createUseInbox(React, { InboxClient, LocalStoragePositionStore }) {
  const { useEffect, useState } = React;
  return function useInbox({ url, token, device, positionKey, limit = 100 }) {
    const [messages, setMessages] = useState([]);
    const [state, setState] = useState('idle');
    const [error, setError] = useState(undefined);
    useEffect(() => {
      const client = new InboxClient({
        url,
        token,
        device,
        positionStore: positionKey ? new LocalStoragePositionStore(positionKey) : undefined,
      });
      client.on('state', ({ to }) => setState(to));
      client.on('error', (failure) => {
        if (!failure.temporary) setError(failure);
      });
      client.on('message', (message) => setMessages((previous) => [...previous, message].slice(-limit)));
      // connect() rejects when the client gives up; the error listener has recorded why.
      client.connect().catch(() => undefined);
      return () => {
        void client.close();
      };
    }, [url, token, device, positionKey, limit]);
    return { messages, state, error };
  };
}
