package org.pixelhub.validator;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.util.VersionUtil;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import java.io.BufferedReader;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.PrePopulatedValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.UnknownCodeSystemWarningValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.Bundle;
import org.hl7.fhir.r5.utils.validation.constants.BestPracticeWarningLevel;

/**
 * Validates every {@code *.json} file of a folder against the FHIR R4 (4.0.1) base definitions
 * plus the conformance resources (StructureDefinition, ValueSet, CodeSystem) of an optional
 * profiles folder, without a terminology server, and prints one JSON report on stdout:
 *
 * <pre>{"validator": {...}, "files": [{"file": "a.json", "issues": [{"severity": "error",
 * "location": "Patient.birthDate", "message": "...", ...}]}]}</pre>
 *
 * <p>Usage: {@code FolderValidator <resources-dir> [profiles-dir]} validates once; {@code
 * FolderValidator --serve [profiles-dir]} prints a {@code {"ready": ...}} line, then reads one
 * folder path per stdin line and answers each with one report line, so a test run starts one JVM.
 *
 * <p>Exit code 0 whatever the issues found; 2 for bad usage; 3 when the validator cannot start or
 * cannot load its definitions (checked on start-up with a known-good and a known-bad resource).
 */
public final class FolderValidator {
  static final String FHIR_VERSION = "4.0.1";
  static final int EXIT_USAGE = 2;
  static final int EXIT_STARTUP = 3;

  // Canaries checked on start-up: if the definitions are missing the bad one passes silently.
  private static final String CANARY_GOOD = "{\"resourceType\":\"Patient\",\"birthDate\":\"2024-02-29\"}";
  private static final String CANARY_BAD = "{\"resourceType\":\"Patient\",\"birthDate\":\"2024-02-30\"}";

  private final FhirValidator validator;
  private final int profileResources;

  private FolderValidator(FhirValidator validator, int profileResources) {
    this.validator = validator;
    this.profileResources = profileResources;
  }

  /** Builds the validator and checks that the R4 definitions are really there. */
  static FolderValidator start(Path profilesDir) throws IOException {
    FhirContext ctx = FhirContext.forR4Cached();
    String version = ctx.getVersion().getVersion().getFhirVersionString();
    if (!FHIR_VERSION.equals(version)) {
      throw new IllegalStateException("HAPI R4 context reports FHIR " + version);
    }

    PrePopulatedValidationSupport ours = new PrePopulatedValidationSupport(ctx);
    int loaded = loadProfiles(ctx, ours, profilesDir);

    // No terminology server: codes from systems we cannot check become warnings, not errors.
    UnknownCodeSystemWarningValidationSupport unknownSystems =
        new UnknownCodeSystemWarningValidationSupport(ctx);
    unknownSystems.setNonExistentCodeSystemSeverity(IValidationSupport.IssueSeverity.WARNING);

    ValidationSupportChain chain =
        new ValidationSupportChain(
            new DefaultProfileValidationSupport(ctx),
            ours,
            new CommonCodeSystemsTerminologyService(ctx),
            new InMemoryTerminologyServerValidationSupport(ctx),
            new SnapshotGeneratingValidationSupport(ctx),
            unknownSystems);

    for (String type : List.of("Patient", "ImagingStudy", "DocumentReference", "Bundle")) {
      String url = "http://hl7.org/fhir/StructureDefinition/" + type;
      if (chain.fetchStructureDefinition(url) == null) {
        throw new IllegalStateException("base definition not found: " + url);
      }
    }

    FhirInstanceValidator module = new FhirInstanceValidator(chain);
    module.setAnyExtensionsAllowed(true);
    module.setErrorForUnknownProfiles(true);
    module.setNoExtensibleWarnings(true);
    // dom-6 ("should have a narrative") and friends: not our contract, only noise.
    module.setBestPracticeWarningLevel(BestPracticeWarningLevel.Ignore);

    FhirValidator validator = ctx.newValidator();
    validator.setValidateAgainstStandardSchema(false);
    validator.setValidateAgainstStandardSchematron(false);
    validator.registerValidatorModule(module);

    FolderValidator result = new FolderValidator(validator, loaded);
    result.checkCanaries();
    return result;
  }

  private void checkCanaries() {
    if (countErrors(validator.validateWithResult(CANARY_GOOD)) != 0) {
      throw new IllegalStateException("a valid Patient fails validation: " + CANARY_GOOD);
    }
    if (countErrors(validator.validateWithResult(CANARY_BAD)) == 0) {
      throw new IllegalStateException(
          "an invalid Patient passes validation (definitions not loaded?): " + CANARY_BAD);
    }
  }

  private static long countErrors(ValidationResult result) {
    return result.getMessages().stream()
        .filter(m -> m.getSeverity().ordinal() >= ResultSeverityEnum.ERROR.ordinal())
        .count();
  }

  /** Adds every conformance resource found in {@code *.json} files (or Bundles of them). */
  private static int loadProfiles(FhirContext ctx, PrePopulatedValidationSupport into, Path dir)
      throws IOException {
    if (dir == null) {
      return 0;
    }
    if (!Files.isDirectory(dir)) {
      throw new IllegalStateException("profiles folder not found: " + dir);
    }
    int count = 0;
    for (Path file : jsonFiles(dir)) {
      IBaseResource resource;
      try {
        resource = ctx.newJsonParser().parseResource(Files.readString(file));
      } catch (RuntimeException e) {
        throw new IllegalStateException("cannot parse profile file " + file + ": " + e, e);
      }
      List<IBaseResource> found = new ArrayList<>();
      if (resource instanceof Bundle bundle) {
        bundle.getEntry().forEach(entry -> found.add(entry.getResource()));
      } else {
        found.add(resource);
      }
      for (IBaseResource each : found) {
        String type = ctx.getResourceType(each);
        if (!List.of("StructureDefinition", "ValueSet", "CodeSystem").contains(type)) {
          throw new IllegalStateException(file + ": unexpected " + type + " in profiles folder");
        }
        into.addResource(each);
        count++;
      }
    }
    return count;
  }

  private static List<Path> jsonFiles(Path dir) throws IOException {
    try (Stream<Path> files = Files.list(dir)) {
      return files
          .filter(p -> p.getFileName().toString().endsWith(".json") && Files.isRegularFile(p))
          .sorted()
          .toList();
    }
  }

  /** Validates the folder's files and returns the report as one line of JSON. */
  String validateFolder(Path dir) throws IOException {
    StringBuilder out = new StringBuilder(4096);
    out.append("{\"validator\":").append(describe()).append(",\"files\":[");
    boolean firstFile = true;
    for (Path file : jsonFiles(dir)) {
      if (!firstFile) {
        out.append(',');
      }
      firstFile = false;
      out.append("{\"file\":").append(Json.quote(file.getFileName().toString()));
      out.append(",\"issues\":[");
      appendIssues(out, file);
      out.append("]}");
    }
    return out.append("]}").toString();
  }

  private void appendIssues(StringBuilder out, Path file) {
    List<SingleValidationMessage> messages;
    try {
      messages = validator.validateWithResult(Files.readString(file)).getMessages();
    } catch (IOException | RuntimeException e) {
      // Unreadable or unparseable input is an error of that file, not of the whole run.
      out.append(issue("error", "(file)", "cannot validate: " + e, null, null, null));
      return;
    }
    boolean first = true;
    for (SingleValidationMessage m : messages) {
      if (!first) {
        out.append(',');
      }
      first = false;
      out.append(
          issue(
              severity(m.getSeverity()),
              m.getLocationString(),
              m.getMessage(),
              m.getMessageId(),
              m.getLocationLine(),
              m.getLocationCol()));
    }
  }

  private static String severity(ResultSeverityEnum severity) {
    return switch (severity) {
      case FATAL, ERROR -> "error";
      case WARNING -> "warning";
      case INFORMATION -> "information";
    };
  }

  private static String issue(
      String severity, String location, String message, String id, Integer line, Integer col) {
    return "{\"severity\":" + Json.quote(severity)
        + ",\"location\":" + Json.quote(location == null ? "" : location)
        + ",\"message\":" + Json.quote(message)
        + ",\"messageId\":" + Json.quote(id)
        + ",\"line\":" + (line == null ? "null" : line)
        + ",\"col\":" + (col == null ? "null" : col)
        + "}";
  }

  String describe() {
    return "{\"hapi\":" + Json.quote(VersionUtil.getVersion())
        + ",\"fhirVersion\":" + Json.quote(FHIR_VERSION)
        + ",\"profileResources\":" + profileResources + "}";
  }

  public static void main(String[] args) {
    // Whatever a library prints must not corrupt the JSON on stdout.
    PrintStream stdout =
        new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);
    System.setOut(System.err);

    boolean serve = args.length >= 1 && args[0].equals("--serve");
    List<String> rest = List.of(args).subList(serve ? 1 : 0, args.length);
    int needed = serve ? 0 : 1;
    if (rest.size() < needed || rest.size() > needed + 1) {
      System.err.println(
          "usage: FolderValidator <resources-dir> [profiles-dir]\n"
              + "       FolderValidator --serve [profiles-dir]   (one folder path per stdin line)");
      System.exit(EXIT_USAGE);
    }
    Path profiles = rest.size() > needed ? Path.of(rest.get(needed)) : null;

    long started = System.nanoTime();
    FolderValidator harness;
    try {
      harness = start(profiles);
      System.err.printf(
          "pixelhub-fhir-validator: ready in %d ms: %s%n",
          (System.nanoTime() - started) / 1_000_000, harness.describe());
    } catch (Exception | LinkageError e) {
      System.err.println("pixelhub-fhir-validator: cannot start: " + e);
      e.printStackTrace(System.err);
      System.exit(EXIT_STARTUP);
      return;
    }

    try {
      if (serve) {
        stdout.println("{\"ready\":true,\"validator\":" + harness.describe() + "}");
        BufferedReader in =
            new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line = in.readLine(); line != null; line = in.readLine()) {
          if (line.isBlank()) {
            continue;
          }
          try {
            stdout.println(harness.validateFolder(Path.of(line.strip())));
          } catch (IOException | RuntimeException e) {
            stdout.println("{\"error\":" + Json.quote("cannot validate " + line + ": " + e) + "}");
          }
        }
      } else {
        Path dir = Path.of(rest.get(0));
        if (!Files.isDirectory(dir)) {
          System.err.println("pixelhub-fhir-validator: not a folder: " + dir);
          System.exit(EXIT_USAGE);
        }
        started = System.nanoTime();
        stdout.println(harness.validateFolder(dir));
        System.err.printf(
            "pixelhub-fhir-validator: validated %s in %d ms%n",
            dir, (System.nanoTime() - started) / 1_000_000);
      }
    } catch (IOException e) {
      System.err.println("pixelhub-fhir-validator: " + e);
      System.exit(1);
    }
    stdout.flush();
  }
}
