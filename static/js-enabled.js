/* Marks the page as JavaScript-enabled for NHS.UK frontend's CSS (the
   equivalent of the inline snippet in the NHS.UK page template, kept in a
   file so the Content-Security-Policy can forbid inline script). Loaded as a
   normal, synchronous script at the very start of <body>. */
document.body.className += ' js-enabled' + ('noModule' in HTMLScriptElement.prototype ? ' nhsuk-frontend-supported' : '');
