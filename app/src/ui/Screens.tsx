// Full-page states: loading, errors (each with what to do next), missing permission.

import { useEffect, useRef } from "preact/hooks";
import { AppError } from "../config";
import { restart } from "../smart";

const TITLES: Record<AppError["kind"], string> = {
  config: "The app is not set up",
  launch: "This launch cannot be used",
  auth: "Sign-in did not complete",
  patient: "Patient not available",
  permission: "Missing permission",
  network: "PixelHub cannot be reached",
};

function useFocusOnMount() {
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), []);
  return heading;
}

export function Loading({ text }: { text: string }) {
  return (
    <main class="screen" id="main">
      <p class="status" role="status">
        {text}
      </p>
    </main>
  );
}

export function ErrorScreen({ error }: { error: AppError }) {
  const heading = useFocusOnMount();
  return (
    <main class="screen error" id="main" data-screen={`error-${error.kind}`}>
      <h1 ref={heading} tabIndex={-1}>
        {TITLES[error.kind]}
      </h1>
      <p role="alert">{error.message}</p>
      {error.detail.length > 0 && (
        <ul class="detail">
          {error.detail.map((d) => (
            <li key={d}>{d}</li>
          ))}
        </ul>
      )}
      {error.kind !== "config" && <SignInAgain />}
    </main>
  );
}

/** Starts the SMART launch over (a new sign-in at PixelHub). */
function SignInAgain() {
  return (
    <p>
      <button type="button" class="primary" onClick={restart}>
        Sign in again
      </button>
    </p>
  );
}

/** SMART scopes the token lacks (scopes-and-launch-context.html): say which and what to ask. */
export function PermissionScreen({ missing }: { missing: string[] }) {
  const heading = useFocusOnMount();
  return (
    <main class="screen error" id="main" data-screen="missing-permission">
      <h1 ref={heading} tabIndex={-1}>
        Missing permission
      </h1>
      <p role="alert">
        PixelHub did not give this app permission to read everything the imaging timeline shows, so it
        cannot show a complete record.
      </p>
      <p>The access granted lacks read access to:</p>
      <ul class="detail">
        {missing.map((type) => (
          <li key={type}>
            <strong>{type}</strong> (scope <code>patient/{type}.rs</code>)
          </li>
        ))}
      </ul>
      <p>
        Ask your PixelHub administrator to allow these scopes for the app (its client registration), then
        sign in again.
      </p>
      <SignInAgain />
    </main>
  );
}
