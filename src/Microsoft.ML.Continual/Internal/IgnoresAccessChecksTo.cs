// See README.md in this folder: the only place where the library reaches ML.NET internals.
[assembly: System.Runtime.CompilerServices.IgnoresAccessChecksTo("Microsoft.ML.Core")]
// ONNX export: IDataTransform, ITransformCanSaveOnnx and OnnxContext (Internal/OnnxExport.cs).
[assembly: System.Runtime.CompilerServices.IgnoresAccessChecksTo("Microsoft.ML.Data")]

namespace System.Runtime.CompilerServices
{
    /// <summary>
    /// Honoured by the CoreCLR loader: code in this assembly may access non-public members of the named assembly.
    /// The compiler does not know the attribute; it is satisfied by compiling against a publicized reference.
    /// </summary>
    [AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
    internal sealed class IgnoresAccessChecksToAttribute : Attribute
    {
        public IgnoresAccessChecksToAttribute(string assemblyName) => AssemblyName = assemblyName;

        public string AssemblyName { get; }
    }
}
