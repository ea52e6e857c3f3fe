// The app shell around the client guide's components. The components and hooks
// themselves (ChatComponent.jsx, NotificationComponent.jsx, hooks/*.js) are not in the
// repository: test_browser.py copies them out of the guide into the build directory at
// test time. `?show=chat,notifications` picks which components this page renders; each
// reads its token from localStorage 'authToken', as the guide's components do.
import { createRoot } from 'react-dom/client';
import ChatComponent from './ChatComponent.jsx';
import NotificationComponent from './NotificationComponent.jsx';

const show = (new URLSearchParams(window.location.search).get('show') || 'chat').split(',');

createRoot(document.getElementById('root')).render(
  <>
    {show.includes('chat') && <section id="chat"><ChatComponent /></section>}
    {show.includes('notifications') && (
      <section id="notifications"><NotificationComponent /></section>
    )}
  </>
);
