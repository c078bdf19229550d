// Writes a copy of an assembly with every type and member made public, for compiling against only.
// Used by src/Microsoft.ML.Continual/Internal (see README.md there): the library is compiled against a
// publicized Microsoft.ML.Core.dll and runs against the real one, with [IgnoresAccessChecksTo] telling
// the runtime to allow the access. Nothing produced here ships.
using Mono.Cecil;

if (args.Length != 2)
{
    Console.Error.WriteLine("usage: Publicizer <input.dll> <output.dll>");
    return 2;
}

var resolver = new DefaultAssemblyResolver();
resolver.AddSearchDirectory(Path.GetDirectoryName(Path.GetFullPath(args[0]))!);
using var assembly = AssemblyDefinition.ReadAssembly(args[0], new ReaderParameters { AssemblyResolver = resolver });
foreach (TypeDefinition type in assembly.MainModule.GetTypes())
{
    if (type.IsNested) type.IsNestedPublic = true; else type.IsPublic = true;
    foreach (MethodDefinition method in type.Methods) method.IsPublic = true;
    foreach (FieldDefinition field in type.Fields)
    {
        // A field that shares its name with an event would make every use of the event ambiguous.
        if (type.Events.Any(e => e.Name == field.Name)) continue;
        field.IsPublic = true;
    }
}
Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(args[1]))!);
assembly.Write(args[1]);
return 0;
