/* Progressive enhancement only: every page works without JavaScript.
   nhsuk-frontend.min.js is an ES module, so this file is loaded with
   <script type="module"> (deferred by default) and starts its components. */
import { initAll } from './nhsuk/nhsuk-frontend.min.js';

initAll();
