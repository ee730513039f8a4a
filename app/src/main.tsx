// /app/: the SMART redirect URI and standalone entry (SMART App Launch 2.2 app-launch.html):
// sign in (or finish signing in), check the grant and the launched patient, load the timeline.

import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { Api } from "./api";
import { AppError, loadConfig } from "./config";
import { loadPatient, loadTimeline } from "./load";
import { checkGrant, connect, launchedPatient, signOutUrl } from "./smart";
import { App, type Session } from "./ui/App";
import { ErrorScreen, Loading, PermissionScreen } from "./ui/Screens";
import "./styles.css";

type State =
  | { phase: "loading"; text: string }
  | { phase: "error"; error: AppError }
  | { phase: "permission"; missing: string[] }
  | { phase: "ready"; session: Session };

async function start(set: (s: State) => void): Promise<void> {
  const config = await loadConfig();
  const client = await connect(config);
  set({ phase: "loading", text: "Loading the imaging record…" });
  const grant = checkGrant(String(client.getState("tokenResponse.scope") || ""));
  if (grant.missing.length) {
    set({ phase: "permission", missing: grant.missing });
    return;
  }
  const patientId = launchedPatient(client);
  const api = new Api(client, config);
  const [patient, first] = await Promise.all([
    loadPatient(api, patientId),
    loadTimeline(api, patientId, grant.scopes, false),
  ]);
  set({
    phase: "ready",
    session: {
      api,
      config,
      patientId,
      patient,
      scopes: grant.scopes,
      missingOptional: grant.missingOptional,
      banner: client.getState("tokenResponse.need_patient_banner") !== false,
      signOut: signOutUrl(client),
      first,
    },
  });
}

function Root() {
  const [state, setState] = useState<State>({ phase: "loading", text: "Signing in…" });
  useEffect(() => {
    start(setState).catch((e: unknown) => {
      const error = e instanceof AppError ? e : new AppError("network", "The imaging record could not be loaded.", [String((e as Error)?.message ?? e)]);
      setState({ phase: "error", error });
    });
  }, []);
  switch (state.phase) {
    case "loading":
      return <Loading text={state.text} />;
    case "error":
      return <ErrorScreen error={state.error} />;
    case "permission":
      return <PermissionScreen missing={state.missing} />;
    case "ready":
      return <App session={state.session} />;
  }
}

const root = document.getElementById("app")!;
root.replaceChildren(); // the static "Loading…" line of index.html
render(<Root />, root);
